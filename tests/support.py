"""Test helpers: real servers on free loopback ports, and payload builders."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alertmanager-0.25"
PROJECT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextmanager
def serving(config: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`receiver serve` with this config on a free loopback port, its output in `log`: its base
    URL and process. Stopped with SIGTERM (SIGKILL after 30 s) and always reaped."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "receiver",
                "serve",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """A real redis-server on a free port, which a test may stop and start again."""

    def __init__(self, workdir: Path, *, persist: bool = False) -> None:
        self.persist = persist  # keep the data across stop() and start() (append-only file)
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persist else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def fixture(name: str) -> dict[str, Any]:
    """One of the captured Alertmanager 0.25 bodies."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def alert(
    name: str = "TestAlert",
    *,
    status: str = "firing",
    starts_at: str = "2026-11-24T10:00:00Z",
    ends_at: str = "0001-01-01T00:00:00Z",
    fingerprint: str | None = None,
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    """An alert as Alertmanager sends it."""
    out: dict[str, Any] = {
        "status": status,
        "labels": {"alertname": name, **labels},
        "annotations": annotations or {},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus:9090/graph",
    }
    if fingerprint is not None:
        out["fingerprint"] = fingerprint
    return out


def payload(*alerts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A version-4 webhook body around the given alerts."""
    return {
        "version": "4",
        "receiver": "remediation",
        "status": "firing",
        "groupKey": "{}:{}",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
        **extra,
    }


def load_rules_text(tmp_dir: Path, text: str) -> tuple[Any, ...]:
    """Rules from YAML text, asserting they load without errors."""
    from receiver.rules import load_rules
    from receiver.yamlsource import load_documents

    f = tmp_dir / "rules-under-test.yml"
    f.write_text(text)
    rules, errors = load_rules(load_documents(f)[0])
    assert errors == [], errors
    return tuple(rules)


def write_config(tmp_dir: Path, *, rules: str, playbooks: dict[str, str], settings: str = "") -> Path:
    """Write a main config with its rules and playbook files into tmp_dir; return its path."""
    (tmp_dir / "rules").mkdir(exist_ok=True)
    (tmp_dir / "playbooks").mkdir(exist_ok=True)
    (tmp_dir / "rules" / "rules.yml").write_text(rules)
    for name, text in playbooks.items():
        (tmp_dir / "playbooks" / f"{name}.yml").write_text(text)
    path = tmp_dir / "receiver.yml"
    path.write_text(f"rules: [rules/*.yml]\nplaybooks: [playbooks/*.yml]\n{settings}")
    return path


class Recorder:
    """An HTTP server on loopback that records every request and answers from a script of
    (status, JSON body) replies, the last one repeating; stands in for Grafana, a webhook, ...
    Use as `async with Recorder(...) as rec:`; `rec.url` is its base URL."""

    def __init__(self, *replies: tuple[int, Any]) -> None:
        self.replies = list(replies) or [(200, {})]
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._runner: Any = None

    async def __aenter__(self) -> Recorder:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.query),
                    "headers": dict(request.headers),
                    "body": body,
                }
            )
            status, reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
            if isinstance(reply, str):
                return web.Response(status=status, text=reply)
            return web.json_response(reply, status=status)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._runner.cleanup()


async def claim_and_run(engine: Any, store: Any) -> Any:
    """Claim the next queued execution as worker "w", run it to its end with `engine`, and return
    the stored record."""
    claimed = await store.claim("w", 2)
    assert claimed is not None
    await engine.execute(claimed, "w")
    done = await store.get(claimed.id)
    assert done is not None
    return done
