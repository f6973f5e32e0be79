"""Crash safety with real processes: a receiver killed with SIGKILL in the middle of a playbook
leaves its execution to another process (Redis: a second replica; SQLite: the restarted one),
which takes it over once its worker has been silent for `reclaim_after`, without running again
the steps that completed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import RedisServer, free_port, wait_port
from tests.test_e2e_alertmanager import http, wait_for

pytestmark = pytest.mark.timeout(120)

RULES = """
rules:
  - name: r
    matchers: ['alertname="Crash"']
    playbook: p
"""

PLAYBOOK = """
name: p
steps:
  - id: a
    action: script
    with: {{command: ["sh", "-c", "echo a >> {log}"]}}
    rollback: {{action: script, with: {{command: ["sh", "-c", "echo undo-a >> {log}"]}}}}
  - id: b
    action: script
    idempotent: {idempotent}
    with: {{command: ["sh", "-c", "echo b >> {log}; sleep 2"]}}
  - id: c
    action: script
    with: {{command: ["sh", "-c", "echo c >> {log}"]}}
"""


class Receivers:
    """`receiver serve` processes on one config, each on its own port."""

    def __init__(self, tmp_path: Path, store: str, idempotent: bool, reclaim_after: str = "2s") -> None:
        self.dir = tmp_path
        (tmp_path / "rules").mkdir()
        (tmp_path / "playbooks").mkdir()
        (tmp_path / "rules" / "r.yml").write_text(RULES)
        text = PLAYBOOK.format(log=tmp_path / "log", idempotent=str(idempotent).lower())
        (tmp_path / "playbooks" / "p.yml").write_text(text)
        self.config = tmp_path / "receiver.yml"
        self.config.write_text(
            f"store: {store}\nreclaim_after: {reclaim_after}\nworkers: 2\n"
            f"rules: ['{tmp_path}/rules/*.yml']\nplaybooks: ['{tmp_path}/playbooks/*.yml']\n"
        )
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # pid -> process
        self.urls: dict[int, str] = {}

    def start(self) -> int:
        port = free_port()
        log = (self.dir / f"receiver-{len(self.procs)}.log").open("w")
        p = subprocess.Popen(
            [
                *(sys.executable, "-m", "receiver", "serve", "--config", str(self.config)),
                *("--listen", f"127.0.0.1:{port}", "--log-format", "json"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        wait_port(port)
        self.procs[p.pid] = p
        self.urls[p.pid] = f"http://127.0.0.1:{port}"
        return p.pid

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=15)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A database of the test Redis of its own: these receivers use the default key prefix."""
    url = f"redis://127.0.0.1:{redis_server.port}/5"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def receivers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receivers]:
    kind, idempotent, *rest = request.param
    store = request.getfixturevalue("redis_url") if kind == "redis" else f"sqlite:///{tmp_path / 'state.db'}"
    r = Receivers(tmp_path, store, idempotent, *rest)
    try:
        yield r
    finally:
        r.stop()


def run_until_b(r: Receivers, url: str) -> dict[str, Any]:
    """Send the alert and wait until step b runs; the execution as the API shows it then."""
    alert = {
        "status": "firing",
        "labels": {"alertname": "Crash"},
        "annotations": {},
        "startsAt": "2026-11-24T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }
    body = {"version": "4", "receiver": "r", "status": "firing", "alerts": [alert], "groupKey": "{}:{}"}
    ident = http("POST", f"{url}/webhook", body)["accepted"][0]["execution_id"]

    def b_running() -> Any:
        e = http("GET", f"{url}/api/v1/executions/{ident}")
        return e if e["steps"] and e["steps"][1]["status"] == "running" else None

    return wait_for("step b to start", b_running, timeout=20)  # type: ignore[no-any-return]


def worker_pid(execution: dict[str, Any]) -> int:
    """The pid of the process whose worker runs the execution (from its running event)."""
    detail = next(t["detail"] for t in execution["timeline"] if t["event"] == "running")
    return int(detail.removeprefix("worker ").split("-")[-2])


def wait_ended(url: str, ident: str) -> dict[str, Any]:
    def ended() -> Any:
        e = http("GET", f"{url}/api/v1/executions/{ident}")
        return e if e["finished_at"] else None

    return wait_for("the execution to end", ended, timeout=30)  # type: ignore[no-any-return]


@pytest.mark.parametrize("receivers", [("redis", False)], indirect=True)
def test_replica_takes_over_after_sigkill_and_rolls_back_interrupted_step(receivers: Receivers) -> None:
    """Two replicas on Redis; the one running the playbook is killed during step b (not
    idempotent). The other takes over: a is not run again, b fails as interrupted, a's rollback
    runs, and the execution ends rolled_back."""
    first, second = receivers.start(), receivers.start()
    execution = run_until_b(receivers, receivers.urls[first])
    victim = worker_pid(execution)
    assert victim in (first, second)
    os.kill(victim, signal.SIGKILL)
    receivers.procs[victim].wait(timeout=10)
    survivor = second if victim == first else first
    done = wait_ended(receivers.urls[survivor], execution["id"])
    assert done["status"] == "rolled_back"
    assert done["error"] == "step 'b' failed: interrupted: the worker running it stopped"
    assert [s["status"] for s in done["steps"]] == ["succeeded", "failed", "cancelled"]
    resumed = [t for t in done["timeline"] if t["event"] == "resumed"]
    assert len(resumed) == 1 and f"-{survivor}-" in resumed[0]["detail"]
    lines = (receivers.dir / "log").read_text().splitlines()
    assert lines == ["a", "b", "undo-a"]


@pytest.mark.parametrize("receivers", [("sqlite", True)], indirect=True)
def test_restarted_process_resumes_on_sqlite_and_reruns_idempotent_step(receivers: Receivers) -> None:
    """One process on SQLite, killed during step b (idempotent); started again on the same file,
    it takes the execution over, runs b again and finishes, without running a again."""
    pid = receivers.start()
    execution = run_until_b(receivers, receivers.urls[pid])
    os.kill(pid, signal.SIGKILL)
    receivers.procs[pid].wait(timeout=10)
    time.sleep(2.2)  # let the killed process's orphaned `sleep 2` finish writing nothing more
    again = receivers.start()
    done = wait_ended(receivers.urls[again], execution["id"])
    assert done["status"] == "succeeded", done["error"]
    assert (receivers.dir / "log").read_text().splitlines() == ["a", "b", "b", "c"]
    assert done["steps"][1]["attempts"] == 2


@pytest.mark.parametrize("receivers", [("redis", False, "60s")], indirect=True)
def test_sigterm_finishes_the_step_and_hands_the_rest_to_a_replica(receivers: Receivers) -> None:
    """SIGTERM during step b: the process refuses new webhooks, lets b finish, hands the
    execution back and exits 0; the other replica goes on at once with c (long before the 60s
    reclaim_after), and no step runs twice or is interrupted."""
    first, second = receivers.start(), receivers.start()
    execution = run_until_b(receivers, receivers.urls[first])
    victim = worker_pid(execution)
    survivor = second if victim == first else first
    started = time.monotonic()
    os.kill(victim, signal.SIGTERM)
    assert receivers.procs[victim].wait(timeout=20) == 0
    done = wait_ended(receivers.urls[survivor], execution["id"])
    assert time.monotonic() - started < 20
    assert done["status"] == "succeeded", done["error"]
    assert (receivers.dir / "log").read_text().splitlines() == ["a", "b", "c"]
    events = [t["event"] for t in done["timeline"]]
    assert "handed_back" in events and "resumed" in events and "step_interrupted" not in events
