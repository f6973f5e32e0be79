"""Fuzzing a real `receiver serve` process: thousands of generated and mutated bodies at
/webhook and requests at the API only ever get 2xx or 4xx (or 503 from a full queue), the
process stays up, and its memory stays bounded."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import free_port, wait_port, write_config

pytestmark = pytest.mark.timeout(300)

RULES = """
rules:
  - name: r
    matchers: ['alertname=~".+"']
    playbook: p
    params: {x: "{{ alert.labels.x | default('') }}"}
"""
PLAYBOOK = 'name: p\nsteps:\n  - id: s\n    action: script\n    with: {command: ["true", "{{ params.x }}"]}\n'


class Server:
    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc

    def request(self, method: str, path: str, body: bytes | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    settings_text = (
        f"listen: 127.0.0.1:{port}\nworkers: 2\nmax_queued: 100000\nwebhook: {{max_body_bytes: 65536}}\n"
    )
    path = write_config(tmp, rules=RULES, playbooks={"p": PLAYBOOK}, settings=settings_text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--config", str(path), "--log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wait_port(port)
    s = Server(port, proc)
    yield s
    assert proc.poll() is None, "the receiver died during fuzzing"
    proc.terminate()
    proc.wait(timeout=30)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
label_sets = st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6)
times = st.sampled_from(
    ["2026-11-24T10:00:00Z", "0001-01-01T00:00:00Z", "not a time", "", "2026-13-45T99:99:99Z"]
)
alerts = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved", "", "weird"]),
        "labels": label_sets | json_values,
        "annotations": label_sets,
        "startsAt": times,
        "endsAt": times,
    },
    optional={
        "fingerprint": st.text(max_size=20),
        "generatorURL": st.text(max_size=30),
        "extra": json_values,
    },
)
payloads = st.fixed_dictionaries(
    {"alerts": st.lists(alerts | json_values, max_size=4)},
    optional={
        "version": st.sampled_from(["4", "3", ""]) | json_values,
        "status": st.text(max_size=10),
        "groupKey": st.text(max_size=20),
        "receiver": st.text(max_size=20),
        "truncatedAlerts": st.integers() | json_values,
    },
)
FAST = settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def acceptable(status: int) -> bool:
    return 200 <= status < 500 or status == 503


@FAST
@given(body=payloads)
def test_generated_payloads_never_get_a_5xx(server: Server, body: dict[str, Any]) -> None:
    """Payload-shaped bodies with wrong, missing and odd fields: 200, 400 or 413, never 500."""
    assert acceptable(server.request("POST", "/webhook", json.dumps(body).encode()))


@FAST
@given(raw=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_never_get_a_5xx(server: Server, raw: bytes) -> None:
    """Any bytes or JSON value as the body: a 4xx naming the problem, never a 500."""
    assert acceptable(server.request("POST", "/webhook", raw))


@settings(max_examples=400, deadline=None)
@given(
    path=st.sampled_from(
        ["/api/v1/executions", "/api/v1/executions/x", "/api/v1/rules", "/api/v1/playbooks"]
    ),
    query=st.dictionaries(
        st.sampled_from(["status", "since", "until", "limit", "cursor", "rule", "alertname", "x"]),
        st.text(max_size=20),
        max_size=4,
    ),
    action=st.sampled_from(["", "/approve", "/reject", "/cancel", "/retry"]),
    body=st.binary(max_size=100),
)
def test_api_requests_never_get_a_5xx(
    server: Server, path: str, query: dict[str, str], action: str, body: bytes
) -> None:
    """History queries with odd parameters and actions on odd ids and bodies: never a 500."""
    from urllib.parse import urlencode

    if action and path == "/api/v1/executions/x":
        assert acceptable(server.request("POST", path + action, body))
    else:
        assert acceptable(server.request("GET", f"{path}?{urlencode(query)}"))


def test_memory_stays_bounded_after_fuzzing(server: Server) -> None:
    """After the fuzzing above (runs last in this module), the process is up and its resident
    memory has not run away: well under what a leak per request would leave."""
    assert server.proc.poll() is None
    before = server.rss_kb()
    body = json.dumps(
        {"alerts": [{"status": "firing", "labels": {"alertname": "M"}, "startsAt": "x"}]}
    ).encode()
    for _ in range(2000):
        server.request("POST", "/webhook", body)
    assert server.rss_kb() - before < 20_000  # 2,000 more rejected requests add < 20 MB
