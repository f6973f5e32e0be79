"""Run every benchmark and print the table: `python -m bench [--quick] [--out FILE]`.

Starts its own redis-server, floor and receiver processes on free loopback ports and stops them
afterwards; every load loop is bounded in count and time. Figures go to bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def api(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


@contextmanager
def process(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def redis(workdir: Path) -> Iterator[str]:
    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    with process(args, port):
        yield f"redis://127.0.0.1:{port}/0"


# A --quick run (the test suite's) fails within this instead of waiting as long as a full run may.
QUICK_WAIT_S = 60.0
QUICK = False
# The receiver's default number of workers: the ingest figures are those of a shipped config.
WORKERS = 4
PLAYBOOKS = {
    "one": 'name: one\nsteps:\n  - id: s\n    action: script\n    with: {command: ["true"]}\n',
    "five": "name: five\nsteps:\n"
    + "".join(f'  - id: s{i}\n    action: script\n    with: {{command: ["true"]}}\n' for i in range(5)),
    "ask": "name: ask\nsteps:\n  - id: ok\n    action: approval\n    with: {timeout: 1h}\n",
}
RULES = """rules:
  - {name: one, matchers: ['alertname=~"Bench.*"'], playbook: one}
  - {name: five, matchers: ['alertname="Engine"'], playbook: five}
  - {name: ask, matchers: ['alertname="Ask"'], playbook: ask}
"""


@contextmanager
def receiver(workdir: Path, store: str, *, workers: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    (workdir / "rules").mkdir(exist_ok=True)
    (workdir / "playbooks").mkdir(exist_ok=True)
    (workdir / "rules" / "bench.yml").write_text(RULES)
    for name, text in PLAYBOOKS.items():
        (workdir / "playbooks" / f"{name}.yml").write_text(text)
    port = free_port()
    config = workdir / f"receiver-{port}.yml"
    config.write_text(
        f"workers: {workers}\nmax_queued: 10000000\nhistory: {{max_executions: 10000000}}\n"
        "rules: [rules/*.yml]\nplaybooks: [playbooks/*.yml]\n"
    )
    args = [
        sys.executable,
        "-m",
        "receiver",
        "serve",
        "--config",
        str(config),
        "--store",
        store,
        "--listen",
        f"127.0.0.1:{port}",
        "--log-level",
        "error",
    ]
    with process(args, port) as proc:
        yield f"http://127.0.0.1:{port}", proc


@contextmanager
def floor(store: str) -> Iterator[str]:
    port = free_port()
    with process([sys.executable, "-m", "bench.floor", str(port), store], port):
        yield f"http://127.0.0.1:{port}"


def alert(name: str, i: int, starts: str = "2026-11-24T10:00:00Z", new: bool = False) -> dict[str, Any]:
    """An alert with labels and annotations of a realistic size. With `new`, the load generator
    gives it a label value never sent before (its __N__), so it is a new alert every time."""
    return {
        "status": "firing",
        "labels": {
            "alertname": name,
            "instance": f"10.0.{i // 250}.{i % 250}:9100" + ("-__N__" if new else ""),
            "job": "node-exporter",
            "namespace": "production",
            "pod": f"web-{i}-7d9f8c6b5-x2k4q",
            "container": "web",
            "severity": "warning",
            "cluster": "eu-west-1",
        },
        "annotations": {
            "summary": f"Instance {i} is degraded",
            "description": "Disk usage is above 90% and rising; the node will fill up within hours.",
            "runbook_url": "https://runbooks.example.com/disk-filling-up",
        },
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        # Alertmanager sends each alert's fingerprint, a hash of its labels: distinct per name and i
        # (fixed widths), and a new alert's is made unique with its __N__. Load runs each count N
        # from 0, so without the name a storm alert could share a fingerprint with an earlier run's.
        "fingerprint": f"{zlib.crc32(name.encode()):08x}{i:08x}{'__N__' if new else ''}",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=node_filesystem_avail_bytes",
    }


def body(alerts: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "version": "4",
            "status": "firing",
            "receiver": "remediation",
            "groupKey": "{}:{}",
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts,
        }
    )


def bodies_file(workdir: Path, name: str, lines: list[str]) -> Path:
    path = workdir / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


_RUNS = itertools.count()


def load(
    urls: str, bodies: Path, *, connections: int, seconds: float, max_requests: int, rate: float = 0
) -> dict[str, Any]:
    """POST the bodies to /webhook of each base URL (comma-separated) from a separate process."""
    hooks = ",".join(f"{u}/webhook" for u in urls.split(","))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            hooks,
            str(bodies),
            str(connections),
            str(seconds),
            str(max_requests),
            str(rate),
            str(next(_RUNS) * 10**9),  # new alerts never repeat those of an earlier run
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def wait_until(check: Any, timeout: float, what: str) -> None:
    """Poll until `check()` holds; a figure taken after a wait that never ended would be wrong, so
    the run stops there, saying what it waited for. A quick run waits at most QUICK_WAIT_S."""
    if QUICK:
        timeout = min(timeout, QUICK_WAIT_S)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"gave up after {timeout:.0f}s waiting for {what}")


def counted(url: str, metric: str, match: str = "") -> float:
    """The sum of a counter's samples (whose labels contain `match`) from /metrics: a cheap way to
    follow progress that does not load the receiver like listing its history would."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") and match in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def ended(url: str) -> float:
    return counted(url, "receiver_executions_total")


def settle(urls: str, timeout: float = 600) -> None:
    """Wait until every execution the receivers admitted has ended, so that the figures that
    follow measure the webhook, not warm-up executions still running beside it. Receivers on one
    Redis run each other's executions, so the counts are summed over all of them."""
    each = urls.split(",")
    admitted = sum(counted(u, "receiver_alerts_admitted_total") for u in each)
    wait_until(
        lambda: sum(ended(u) for u in each) >= admitted, timeout, f"{admitted:.0f} warm-up executions to end"
    )


def all_executions(url: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = api(f"{url}/api/v1/executions?limit=500" + (f"&cursor={cursor}" if cursor else ""))
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def ingest(workdir: Path, size: dict[str, Any]) -> dict[str, Any]:
    """(a) re-sends of seen alerts and (b) 20% new alerts, receiver against floor; (f) scale out.

    Floor and receiver run side by side on one Redis and take turns, round after round, so that
    both see the same machine; each figure is the median over the rounds. After each receiver
    round of new alerts, the executions it admitted end before the next round begins.
    """
    payloads = size["payloads"]
    seen = [body([alert("BenchSeen", p * 10 + k) for k in range(10)]) for p in range(payloads)]
    mixed = [
        body(
            [alert("BenchSeen", p * 10 + k) for k in range(8)]
            + [alert("BenchNew", p * 10 + k, new=True) for k in range(2)]
        )
        for p in range(payloads)
    ]
    resend_file, mixed_file = bodies_file(workdir, "seen", seen), bodies_file(workdir, "mixed", mixed)
    run = {"connections": 32, "seconds": size["seconds"], "max_requests": size["max_requests"]}
    rounds: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("floor_resend", "receiver_resend", "floor_mixed", "receiver_mixed")
    }
    with redis(workdir) as store, floor(store) as f, receiver(workdir, store, workers=WORKERS) as (r, _):
        for url in (f, r):  # warm up: from here on, every alert of the re-send file is seen
            load(url, resend_file, connections=32, seconds=60, max_requests=payloads)
        settle(r)
        for _ in range(size["rounds"]):
            rounds["floor_resend"].append(load(f, resend_file, **run))
            rounds["receiver_resend"].append(load(r, resend_file, **run))
        for _ in range(size["rounds"]):
            rounds["floor_mixed"].append(load(f, mixed_file, **run))
            rounds["receiver_mixed"].append(load(r, mixed_file, **run))
            settle(r)
    out: dict[str, Any] = {k: median_run(v) for k, v in rounds.items()}
    scale: dict[str, Any] = {}
    for n in (1, 2, 3):
        with (
            redis(workdir) as store,
            contextmanager_list([lambda: receiver(workdir, store, workers=WORKERS)] * n) as recs,
        ):
            urls = ",".join(u for u, _ in recs)
            load(urls, resend_file, connections=32, seconds=60, max_requests=payloads)
            settle(urls)
            scale[str(n)] = load(urls, resend_file, **run)
    out["scale_out_resend"] = scale
    return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure per measure: the median over the rounds; the rounds' rates are kept too."""
    out: dict[str, Any] = {
        k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "p999_ms")
    }
    out["requests"] = sum(r["requests"] for r in runs)
    codes: dict[str, int] = {}
    for r in runs:
        for code, count in r["codes"].items():
            codes[code] = codes.get(code, 0) + count
    out["codes"] = codes
    out["rounds_rps"] = [r["rps"] for r in runs]
    return out


@contextmanager
def contextmanager_list(factories: list[Any]) -> Iterator[list[Any]]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield [stack.enter_context(f()) for f in factories]


def alert_to_action(workdir: Path, size: dict[str, Any]) -> dict[str, Any]:
    """(c) New alerts at a steady rate; webhook arrival to the step's start, from the records."""
    rate_alerts = size["rate"]
    seconds = size["action_seconds"]
    lines = [body([alert("BenchAction", 10 * p + k, new=True) for k in range(10)]) for p in range(50)]
    path = bodies_file(workdir, "action", lines)
    with redis(workdir) as store, receiver(workdir, store, workers=8) as (url, _):
        sent = load(url, path, connections=32, seconds=seconds, max_requests=10**6, rate=rate_alerts / 10)
        expected = sent["codes"].get("200", 0) * 10
        wait_until(lambda: ended(url) >= expected, 300, f"{expected} executions to end")
        delays = []
        for e in all_executions(url):
            detail = api(f"{url}/api/v1/executions/{e['id']}")
            created = _epoch(detail["created_at"])
            started = detail["steps"][0]["started_at"] if detail["steps"] else None
            if started:
                delays.append((_epoch(started) - created) * 1000)
    delays.sort()
    return {
        "alerts_per_s": rate_alerts,
        "executions": len(delays),
        "p50_ms": round(delays[len(delays) // 2], 1) if delays else None,
        "p99_ms": round(delays[min(len(delays) - 1, int(len(delays) * 0.99))], 1) if delays else None,
    }


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def engine(workdir: Path, size: dict[str, Any]) -> dict[str, Any]:
    """(d) Executions/s of a 5-step playbook of `true`, against bare spawns of `true`."""
    n = size["engine_executions"]
    workers = 8
    lines = [body([alert("Engine", i, new=True)]) for i in range(1)]
    path = bodies_file(workdir, "engine", lines)
    with redis(workdir) as store, receiver(workdir, store, workers=workers) as (url, _):
        start = time.perf_counter()
        load(url, path, connections=8, seconds=60, max_requests=n)
        wait_until(lambda: ended(url) >= n, 600, f"{n} executions to end")
        elapsed = time.perf_counter() - start
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        # Exits seen through pidfds, not a thread per child (3.12 does so itself), as the
        # receiver's script action does: the bare rate is the best this Python gets.
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    bare = asyncio.run(_bare_spawns(n * 5, workers))
    rate = n / elapsed
    return {
        "executions": n,
        "executions_per_s": round(rate, 1),
        "bare_spawns_per_s": round(bare, 1),
        "bare_executions_per_s": round(bare / 5, 1),
        "ratio": round(rate / (bare / 5), 2),
    }


async def _bare_spawns(count: int, concurrency: int) -> float:
    """Spawns of `true` per second with asyncio, `concurrency` at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - start)


def memory(workdir: Path, size: dict[str, Any]) -> dict[str, Any]:
    """(e) RSS with executions waiting for approval, and before and after an alert storm."""
    waiting = size["waiting"]
    storm = size["storm"]
    ask = bodies_file(workdir, "ask", [body([alert("Ask", i, new=True)]) for i in range(1)])
    storm_file = bodies_file(
        workdir,
        "storm",
        [body([alert("BenchStorm", 10 * p + k, new=True) for k in range(10)]) for p in range(20)],
    )
    with redis(workdir) as store, receiver(workdir, store, workers=8) as (url, proc):
        load(url, ask, connections=16, seconds=120, max_requests=waiting)
        wait_until(
            lambda: len([e for e in all_executions(url) if e["status"] == "waiting_approval"]) >= waiting,
            120,
            f"{waiting} executions waiting for approval",
        )
        with_waiting = rss_mb(proc.pid)
        before = rss_mb(proc.pid)
        load(url, storm_file, connections=32, seconds=300, max_requests=storm // 10)
        wait_until(lambda: ended(url) >= storm, 900, f"the {storm} storm executions to end")
        time.sleep(2)
        after = rss_mb(proc.pid)
    return {
        "waiting_executions": waiting,
        "rss_waiting_mb": round(with_waiting, 1),
        "storm_alerts": storm,
        "rss_before_storm_mb": round(before, 1),
        "rss_after_storm_mb": round(after, 1),
        "growth": round(after / before - 1, 3) if before else None,
    }


SIZES = {
    "full": {
        "payloads": 500,
        "rounds": 3,
        "seconds": 6,
        "max_requests": 200_000,
        "rate": 200,
        "action_seconds": 10,
        "engine_executions": 1000,
        "waiting": 1000,
        "storm": 10_000,
    },
    "quick": {
        "payloads": 20,
        "rounds": 1,
        "seconds": 1,
        "max_requests": 200,
        "rate": 50,
        "action_seconds": 1,
        "engine_executions": 5,
        "waiting": 10,
        "storm": 50,
    },
}


def table(r: dict[str, Any]) -> str:
    i = r["ingest"]
    rows = [("benchmark", "receiver", "floor / reference", "ratio", "target")]

    def ing(key: str, target: str) -> None:
        rec, flo = i[f"receiver_{key}"], i[f"floor_{key}"]
        rows.append(
            (
                f"ingest {key}: req/s",
                f"{rec['rps']:.0f}",
                f"{flo['rps']:.0f}",
                f"{rec['rps'] / flo['rps']:.2f}",
                target,
            )
        )
        rows.append(
            (
                f"ingest {key}: p50/p99/p99.9 ms",
                f"{rec['p50_ms']}/{rec['p99_ms']}/{rec['p999_ms']}",
                f"{flo['p50_ms']}/{flo['p99_ms']}/{flo['p999_ms']}",
                f"{rec['p99_ms'] / max(flo['p99_ms'], 0.001):.2f}",
                "p99 <= 1.5x" if key == "resend" else "",
            )
        )

    ing("resend", ">= 0.8x")
    ing("mixed", ">= 0.6x")
    a = r["alert_to_action"]
    rows.append(
        (
            f"alert-to-action at {a['alerts_per_s']}/s: p50/p99 ms",
            f"{a['p50_ms']}/{a['p99_ms']}",
            "",
            "",
            "p99 < 50 ms",
        )
    )
    e = r["engine"]
    rows.append(
        (
            "engine: 5-step executions/s",
            f"{e['executions_per_s']}",
            f"{e['bare_executions_per_s']} (bare spawns / 5)",
            f"{e['ratio']:.2f}",
            ">= 0.7x",
        )
    )
    m = r["memory"]
    rows.append(
        (
            f"RSS with {m['waiting_executions']} waiting for approval",
            f"{m['rss_waiting_mb']} MB",
            "",
            "",
            "< 150 MB",
        )
    )
    rows.append(
        (
            f"RSS before/after {m['storm_alerts']}-alert storm",
            f"{m['rss_before_storm_mb']}/{m['rss_after_storm_mb']} MB",
            "",
            f"{m['growth']:+.1%}",
            "within 10%",
        )
    )
    for n, s in i["scale_out_resend"].items():
        rows.append((f"scale out: {n} receiver(s), re-sends req/s", f"{s['rps']:.0f}", "", "", ""))
    widths = [max(len(str(row[c])) for row in rows) for c in range(5)]
    return "\n".join(" | ".join(str(row[c]).ljust(widths[c]) for c in range(5)) for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny numbers: checks that it works")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    global QUICK
    QUICK = args.quick
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with tempfile.TemporaryDirectory(prefix="receiver-bench-") as tmp:
        workdir = Path(tmp)
        results: dict[str, Any] = {
            "size": "quick" if args.quick else "full",
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        }
        for name, run in (
            ("ingest", ingest),
            ("alert_to_action", alert_to_action),
            ("engine", engine),
            ("memory", memory),
        ):
            started = time.perf_counter()
            results[name] = run(workdir, size)
            print(f"{name} done in {time.perf_counter() - started:.0f}s", file=sys.stderr)
            args.out.write_text(json.dumps(results, indent=2) + "\n")  # what ran so far survives a timeout
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
