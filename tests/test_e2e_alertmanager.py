"""End to end: a real Alertmanager notifies a real receiver process backed by a real redis-server,
authenticating with a Bearer token from a file as its webhook http_config sends it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import PROJECT, RedisServer, free_port, wait_port

pytestmark = pytest.mark.timeout(120)


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        pytest.fail("Alertmanager is not installed (Debian: apt-get install prometheus-alertmanager)")
    return found


def http(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw.decode()


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def stack(tmp_path: Path, redis_server: RedisServer) -> Iterator[dict[str, Any]]:
    """The receiver serving the shipped rules and playbooks, and an Alertmanager pointed at it."""
    rport, aport = free_port(), free_port()
    config = tmp_path / "receiver.yml"
    config.write_text(
        f"listen: 127.0.0.1:{rport}\n"
        f"store: {redis_server.url}\n"
        f"external_url: http://127.0.0.1:{rport}\n"
        f"rules: ['{PROJECT}/rules/*.yml']\n"
        f"playbooks: ['{PROJECT}/playbooks/*.yml']\n"
        # What the shipped restart-deployment playbook needs configured (it does not run here).
        f"integrations: {{alertmanager: {{url: 'http://127.0.0.1:{aport}'}}, grafana: {{url: 'http://127.0.0.1:9'}}}}\n"
        "notifiers: {oncall: {urls: ['json://127.0.0.1:9/x']}}\n"
        # Alertmanager must authenticate, with the token from the same file it reads below.
        f"auth: {{webhook: {{bearer_token_file: '{tmp_path / 'webhook-token'}'}}}}\n"
    )
    (tmp_path / "webhook-token").write_text("am-to-receiver-token\n")
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()  # the receiver below uses the default key prefix
    client.close()
    log = (tmp_path / "receiver.log").open("w")
    receiver = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--config", str(config), "--log-format", "json"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    am_config = tmp_path / "alertmanager.yml"
    am_config.write_text(
        "route:\n"
        "  receiver: remediation\n"
        "  group_by: [alertname, instance]\n"
        "  group_wait: 100ms\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 2s\n"  # re-send every 2s: the receiver must still run the playbook once
        "receivers:\n"
        "  - name: remediation\n"
        "    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{rport}/webhook\n"
        "        send_resolved: true\n"
        "        http_config:\n"
        f"          authorization: {{credentials_file: {tmp_path / 'webhook-token'}}}\n"
    )
    am_log = (tmp_path / "am.log").open("w")
    am = subprocess.Popen(
        [
            alertmanager_binary(),
            f"--config.file={am_config}",
            f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{aport}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=am_log,
    )
    try:
        wait_port(rport)
        wait_port(aport)
        yield {
            "receiver": f"http://127.0.0.1:{rport}",
            "am": f"http://127.0.0.1:{aport}",
            "log": tmp_path / "receiver.log",
        }
    finally:
        for p in (am, receiver):
            p.terminate()
            p.wait(timeout=10)
        log.close()
        am_log.close()


def test_alert_through_alertmanager_runs_playbook_once_and_records_resolution(stack: dict[str, Any]) -> None:
    """An alert fired through Alertmanager runs the shipped playbook exactly once despite re-sends,
    history shows its step output, and its wait_resolved step ends when Alertmanager resolves it."""
    labels = {
        "alertname": "NodeFilesystemSpaceFillingUp",
        "severity": "warning",
        "instance": "node-1",
        "mountpoint": "/",
    }
    starts = datetime.now(UTC)
    http("POST", f"{stack['am']}/api/v2/alerts", [{"labels": labels, "startsAt": starts.isoformat()}])

    def executions() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = http(
            "GET", f"{stack['receiver']}/api/v1/executions?rule=disk-filling-up"
        )["items"]
        return items

    first = wait_for("an execution", executions)[0]
    waiting = wait_for(
        "the diagnosis to finish and the wait for resolution to start",
        lambda: (d := http("GET", first["url"]))["steps"][4]["status"] == "running" and d,
    )
    assert waiting["status"] == "running"
    assert [s["id"] for s in waiting["steps"]] == ["usage", "inodes", "summary", "largest", "cleared"]
    usage, _, summary, largest, _ = waiting["steps"]
    assert "Filesystem" in usage["stdout"] and usage["exit_code"] == 0
    assert summary["stdout"].startswith("node-1 ") and summary["stdout"].strip().endswith(" /")
    assert largest["status"] == "skipped"  # severity is warning, not critical
    assert waiting["params"] == {"mountpoint": "/", "instance": "node-1"}

    def duplicates() -> float:
        text = http("GET", f"{stack['receiver']}/metrics")
        for line in text.splitlines():
            if line.startswith('receiver_alerts_suppressed_total{reason="duplicate"}'):
                return float(line.split()[-1])
        return 0.0

    # repeat_interval is 2s: wait for Alertmanager to re-send at least twice.
    wait_for("Alertmanager re-sends", lambda: duplicates() >= 2, timeout=30)
    assert len(executions()) == 1

    ends = datetime.now(UTC) + timedelta(milliseconds=10)
    http(
        "POST",
        f"{stack['am']}/api/v2/alerts",
        [{"labels": labels, "startsAt": starts.isoformat(), "endsAt": ends.isoformat()}],
    )
    done = wait_for(
        "the closed loop", lambda: (d := http("GET", first["url"]))["status"] == "succeeded" and d
    )
    assert done["steps"][4]["stdout"] == "alert resolved\n"
    assert done["recovered"] is True and done["recovered_after_s"] >= 0
    assert any(t["event"] == "alert_resolved" for t in done["timeline"])
    assert len(executions()) == 1
