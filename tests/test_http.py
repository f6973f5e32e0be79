"""The HTTP edge through the real app: ingest, bad input, history API, probes, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from receiver.app import create_app
from receiver.config import load_config
from receiver.store.base import HistoryQuery, Store
from receiver.store.redis import RedisStore
from tests.conftest import MakeStore
from tests.support import RedisServer, alert, fixture, payload, write_config

RULES = """
rules:
  - name: crashloop
    matchers: ['alertname="KubePodCrashLooping"']
    playbook: echo
    params: {deployment: "{{ alert.labels.deployment }}"}
"""
PLAYBOOK = """name: echo
steps:
  - id: say
    action: script
    with: {command: ["echo", "restarting {{ params.deployment }}"]}
"""


@asynccontextmanager
async def serve(tmp_path: Path, store: Store, settings: str = "") -> AsyncIterator[TestClient[Any, Any]]:
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"echo": PLAYBOOK}, settings=settings))
    client = TestClient(TestServer(create_app(config, store=store)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def wait_terminal(client: TestClient[Any, Any], ident: str) -> dict[str, Any]:
    for _ in range(100):
        r = await client.get(f"/api/v1/executions/{ident}")
        body: dict[str, Any] = await r.json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"execution {ident} did not finish")


async def test_fixture_payload_runs_once_and_shows_in_history(tmp_path: Path, store: Store) -> None:
    """A real Alertmanager body admits one execution per alert, runs it, and history shows the output."""
    async with serve(tmp_path, store) as client:
        r = await client.post("/webhook", json=fixture("firing_group.json"))
        assert r.status == 200
        body = await r.json()
        assert [a["fingerprint"] for a in body["accepted"]] == ["0966f417a7620d6d", "24e1babf70044c9b"]
        again = await (await client.post("/webhook", json=fixture("firing_group.json"))).json()
        assert again["accepted"] == [] and [s["reason"] for s in again["suppressed"]] == ["duplicate"] * 2

        detail = await wait_terminal(client, body["accepted"][0]["execution_id"])
        assert detail["status"] == "succeeded"
        assert detail["steps"][0]["stdout"] == "restarting cart\n"
        assert detail["alert"]["labels"]["pod"] == "cart-5c4b-fghij"
        assert [t["event"] for t in detail["timeline"]][:2] == ["queued", "running"]

        listing = await (
            await client.get("/api/v1/executions", params={"alertname": "KubePodCrashLooping"})
        ).json()
        assert len(listing["items"]) == 2 and listing["next_cursor"] is None


async def test_resolved_alert_is_recorded(tmp_path: Path, store: Store) -> None:
    """After the remediation, the resolved notification marks the execution recovered."""
    async with serve(tmp_path, store) as client:
        body = await (await client.post("/webhook", json=fixture("firing_group.json"))).json()
        ident = body["accepted"][1]["execution_id"]
        await wait_terminal(client, ident)
        resolved = fixture("all_resolved.json")
        resolved["alerts"][0]["endsAt"] = "2099-01-01T00:00:00Z"  # after the run started
        r = await (await client.post("/webhook", json=resolved)).json()
        assert r["resolved"] == [{"execution_id": ident, "cancelled": False}]
        detail = await (await client.get(f"/api/v1/executions/{ident}")).json()
        assert detail["recovered"] is True and detail["resolved_at"].startswith("2099-01-01")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"{not json", "(body)"),
        (b"[]", "(body)"),
        (b'{"version": "4"}', "alerts"),
        (b'{"alerts": 3}', "alerts"),
        (b'{"alerts": [{"status": "firing", "labels": {"a": "b"}}]}', "alerts[0].startsAt"),
    ],
)
async def test_bad_bodies_get_400_naming_the_field(
    tmp_path: Path, store: Store, data: bytes, field: str
) -> None:
    """Non-JSON, wrong types and missing fields get 400 with a JSON error naming the field."""
    async with serve(tmp_path, store) as client:
        r = await client.post("/webhook", data=data, headers={"Content-Type": "application/json"})
        assert r.status == 400
        body = await r.json()
        assert body["field"] == field and field in body["error"]


async def test_odd_alert_does_not_lose_valid_ones(tmp_path: Path, store: Store) -> None:
    """One malformed alert is listed as rejected; the valid alert beside it is admitted."""
    good = alert("KubePodCrashLooping", deployment="web")
    async with serve(tmp_path, store) as client:
        r = await client.post("/webhook", json=payload({"status": "firing", "labels": []}, good))
        body = await r.json()
        assert r.status == 200
        assert len(body["accepted"]) == 1 and body["rejected"][0]["index"] == 0


async def test_body_over_limit_gets_413(tmp_path: Path, store: Store) -> None:
    """A body over webhook.max_body_bytes is refused with 413 and a JSON error."""
    async with serve(tmp_path, store, settings="webhook: {max_body_bytes: 2000}\n") as client:
        big = payload(*(alert("KubePodCrashLooping", deployment=f"d{i}") for i in range(20)))
        r = await client.post("/webhook", data=json.dumps(big))
        assert r.status == 413
        assert "2000" in (await r.json())["error"]


async def test_wrong_method_gets_405_and_unknown_path_404(tmp_path: Path, store: Store) -> None:
    """GET /webhook is 405 with Allow: POST; an unknown path is 404; both JSON."""
    async with serve(tmp_path, store) as client:
        r = await client.get("/webhook")
        assert r.status == 405 and r.headers["Allow"] == "POST"
        assert "error" in await r.json()
        r = await client.get("/nope")
        assert r.status == 404 and "error" in await r.json()


async def test_history_bad_params_and_missing_execution(tmp_path: Path, store: Store) -> None:
    """A bad history parameter is a 400 naming it; an unknown execution id is a 404."""
    async with serve(tmp_path, store) as client:
        for params, name in (
            ({"status": "exploded"}, "status"),
            ({"limit": "0"}, "limit"),
            ({"limit": "²"}, "limit"),  # a digit to isdigit(), not to int()
            ({"since": "last tuesday"}, "since"),
            ({"colour": "red"}, "colour"),
        ):
            r = await client.get("/api/v1/executions", params=params)
            assert r.status == 400 and (await r.json())["param"] == name
        r = await client.get("/api/v1/executions/000000000000deadbeef00")
        assert r.status == 404


async def test_probes_metrics_rules_playbooks(tmp_path: Path, store: Store) -> None:
    """Health, readiness, metrics and the loaded rules and playbooks are served."""
    async with serve(tmp_path, store) as client:
        assert (await client.get("/-/healthy")).status == 200
        ready = await client.get("/-/ready")
        assert ready.status == 200 and (await ready.json())["store"] == store.name
        await client.post("/webhook", json=fixture("firing_group.json"))
        text = await (await client.get("/metrics")).text()
        assert 'receiver_alerts_received_total{status="firing"} 2.0' in text
        assert 'receiver_alerts_admitted_total{rule="crashloop"} 2.0' in text
        assert "receiver_webhook_duration_seconds_bucket" in text
        rules = await (await client.get("/api/v1/rules")).json()
        assert rules["rules"][0]["matchers"] == ['alertname="KubePodCrashLooping"']
        playbooks = await (await client.get("/api/v1/playbooks")).json()
        assert playbooks["playbooks"][0]["steps"][0]["id"] == "say"


async def test_redis_outage_gives_503_and_recovers(tmp_path: Path) -> None:
    """With Redis down the webhook answers 503 and /-/ready is 503; once it is back, work flows again."""
    server = RedisServer(tmp_path)
    server.start()
    store = RedisStore.from_url(server.url)
    try:
        async with serve(tmp_path, store) as client:
            assert (await client.post("/webhook", json=fixture("firing_group.json"))).status == 200
            server.stop()
            r = await client.post("/webhook", json=payload(alert("KubePodCrashLooping", deployment="x")))
            assert r.status == 503 and "unavailable" in (await r.json())["error"]
            assert (await client.get("/-/ready")).status == 503
            assert (await client.get("/-/healthy")).status == 200
            server.start()
            for _ in range(50):
                if (await client.get("/-/ready")).status == 200:
                    break
                await asyncio.sleep(0.1)
            r = await client.post("/webhook", json=payload(alert("KubePodCrashLooping", deployment="y")))
            assert r.status == 200
            # The restarted Redis kept nothing (no persistence): the queue's consumer group is
            # recreated and the new work still runs.
            detail = await wait_terminal(client, (await r.json())["accepted"][0]["execution_id"])
            assert detail["status"] == "succeeded"
            text = await (await client.get("/metrics")).text()
            assert 'receiver_webhook_duration_seconds_count{code="503"} 1.0' in text
    finally:
        await store.close()
        server.stop()


SLOW = """name: echo
steps:
  - id: say
    action: script
    with: {command: ["sleep", "30.4242"]}
  - id: after
    action: script
    with: {command: ["echo", "never"]}
"""


def live_processes(argv: list[str]) -> list[int]:
    """Pids of running (not zombie) processes whose command line is exactly argv."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")[:-1]
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if [c.decode(errors="replace") for c in cmd] == argv and state not in ("Z", "X"):
            found.append(int(proc.name))
    return found


async def test_cancel_running_execution_stops_its_process(tmp_path: Path, store: Store) -> None:
    """POST /cancel on a running execution kills its step's process and ends it cancelled."""
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"echo": SLOW}))
    client = TestClient(TestServer(create_app(config, store=store)))
    await client.start_server()
    try:
        body = await (
            await client.post("/webhook", json=payload(alert("KubePodCrashLooping", deployment="w")))
        ).json()
        ident = body["accepted"][0]["execution_id"]
        for _ in range(100):
            steps = (await (await client.get(f"/api/v1/executions/{ident}")).json())["steps"]
            if steps and steps[0]["status"] == "running":  # no step records until the run starts
                break
            await asyncio.sleep(0.05)
        r = await client.post(f"/api/v1/executions/{ident}/cancel")
        assert r.status == 200 and (await r.json())["status"] == "cancelled"
        for _ in range(100):
            detail = await (await client.get(f"/api/v1/executions/{ident}")).json()
            if detail["steps"][0]["status"] == "cancelled":
                break
            await asyncio.sleep(0.05)
        assert [s["status"] for s in detail["steps"]] == ["cancelled", "cancelled"]
        assert detail["status"] == "cancelled" and detail["error"] == "cancelled by an operator"
        assert detail["steps"][0]["finished_at"] is not None
        assert live_processes(["sleep", "30.4242"]) == []  # the step's process group was killed
        # Cancelling again is a conflict, with a reason.
        again = await client.post(f"/api/v1/executions/{ident}/cancel")
        assert again.status == 409 and "cancelled" in (await again.json())["error"]
    finally:
        await client.close()


async def test_cancel_queued_execution_never_runs(tmp_path: Path, store: Store) -> None:
    """A queued execution cancelled before a worker takes it never runs."""
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"echo": PLAYBOOK}))
    client = TestClient(TestServer(create_app(config, store=store, workers=False)))
    await client.start_server()
    try:
        body = await (await client.post("/webhook", json=fixture("firing_group.json"))).json()
        ident = body["accepted"][0]["execution_id"]
        assert (await client.post(f"/api/v1/executions/{ident}/cancel")).status == 200
        others = await store.claim("w", 0.5)
        assert others is not None and others.id == body["accepted"][1]["execution_id"]
        assert await store.claim("w", 0.3) is None
        assert (await client.post("/api/v1/executions/000000000000deadbeef00/cancel")).status == 404
    finally:
        await client.close()


async def test_retry_runs_again_linked_to_the_original(tmp_path: Path, store: Store) -> None:
    """POST /retry on an ended execution queues a new one for the same alert, linked, despite dedup."""
    async with serve(tmp_path, store) as client:
        body = await (await client.post("/webhook", json=fixture("firing_group.json"))).json()
        first = body["accepted"][0]["execution_id"]
        await wait_terminal(client, first)
        r = await client.post(f"/api/v1/executions/{first}/retry")
        assert r.status == 201
        retried = await r.json()
        assert retried["retry_of"] == first and retried["execution_id"] != first
        detail = await wait_terminal(client, retried["execution_id"])
        assert detail["status"] == "succeeded" and detail["retry_of"] == first
        assert detail["steps"][0]["stdout"] == "restarting cart\n"


async def test_retry_of_unfinished_execution_is_a_conflict(tmp_path: Path, store: Store) -> None:
    """An execution that has not ended cannot be retried (409 with the reason)."""
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"echo": PLAYBOOK}))
    client = TestClient(TestServer(create_app(config, store=store, workers=False)))
    await client.start_server()
    try:
        body = await (await client.post("/webhook", json=fixture("firing_group.json"))).json()
        r = await client.post(f"/api/v1/executions/{body['accepted'][0]['execution_id']}/retry")
        assert r.status == 409 and "still queued" in (await r.json())["error"]
    finally:
        await client.close()


async def test_stopping_receiver_refuses_webhooks_with_503_and_is_not_ready(
    tmp_path: Path, store: Store
) -> None:
    """Once a stop has begun, /webhook answers 503 (Alertmanager retries, on another replica
    behind a Service) and /-/ready says not ready, while the rest of the API still answers."""
    from receiver.handlers import ENGINE

    async with serve(tmp_path, store) as client:
        assert (await client.get("/-/ready")).status == 200
        await client.server.app[ENGINE].stop(0)
        r = await client.post("/webhook", json=fixture("firing_group.json"))
        assert r.status == 503 and "shutting down" in (await r.json())["error"]
        assert (await client.get("/-/ready")).status == 503
        assert (await client.get("/api/v1/executions")).status == 200


async def test_steps_finish_through_a_redis_outage_and_are_recorded_once_it_is_back(tmp_path: Path) -> None:
    """Redis stops while a step runs: the step runs to its end (not killed, not run twice), the
    record waits, and once Redis is back (with its data) the execution finishes without a
    restart of the receiver, its steps recorded."""
    server = RedisServer(tmp_path, persist=True)
    server.start()
    store = RedisStore.from_url(server.url)
    log = tmp_path / "ran"
    playbook = f"""name: echo
steps:
  - id: slow
    action: script
    with: {{command: ["sh", "-c", "echo slow >> {log}; sleep 1.5; echo done"]}}
  - id: after
    action: script
    with: {{command: ["sh", "-c", "echo after >> {log}"]}}
"""
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"echo": playbook}))
    client = TestClient(TestServer(create_app(config, store=store)))
    await client.start_server()
    try:
        r = await client.post("/webhook", json=payload(alert("KubePodCrashLooping", deployment="web")))
        ident = (await r.json())["accepted"][0]["execution_id"]
        for _ in range(100):
            if log.exists():
                break
            await asyncio.sleep(0.05)
        server.stop()
        await asyncio.sleep(2.5)  # the step ends while Redis is down
        assert log.read_text().splitlines() == ["slow"]
        server.start()
        detail = await wait_terminal(client, ident)
        assert detail["status"] == "succeeded", detail
        assert detail["steps"][0]["stdout"] == "done\n" and detail["steps"][0]["exit_code"] == 0
        assert log.read_text().splitlines() == ["slow", "after"]
    finally:
        await client.close()
        await store.close()
        server.stop()


async def test_full_queue_answers_503_so_alertmanager_retries(tmp_path: Path, make_store: MakeStore) -> None:
    """Past max_queued, /webhook answers 503 with Retry-After and records nothing."""
    config = load_config(
        write_config(tmp_path, rules=RULES, playbooks={"echo": PLAYBOOK}, settings="max_queued: 1\n")
    )
    store = make_store(config.settings.limits())
    client = TestClient(TestServer(create_app(config, store=store, workers=False)))
    await client.start_server()
    try:
        first = await client.post("/webhook", json=payload(alert("KubePodCrashLooping", deployment="a")))
        assert first.status == 200
        r = await client.post("/webhook", json=payload(alert("KubePodCrashLooping", deployment="b")))
        assert r.status == 503 and r.headers["Retry-After"] == "30"
        assert (await r.json())[
            "error"
        ] == "the work queue is full (1 waiting or running, limit 1); retry later"
        assert len((await (await client.get("/api/v1/executions")).json())["items"]) == 1
    finally:
        await client.close()


async def test_webhook_stream_through_a_redis_outage_never_acknowledges_unrecorded_work(
    tmp_path: Path,
) -> None:
    """A stream of webhooks while Redis stops and starts again (keeping its data): every answer
    is 200 or 503, never a crash; every alert answered 200 is in the store afterwards; and
    without a restart of the receiver, alerts are admitted again once Redis is back."""
    server = RedisServer(tmp_path, persist=True)
    server.start()
    store = RedisStore.from_url(server.url)
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"echo": PLAYBOOK}))
    client = TestClient(TestServer(create_app(config, store=store, workers=False)))
    await client.start_server()
    answered: dict[int, int] = {}
    try:

        async def send(i: int) -> None:
            r = await client.post("/webhook", json=payload(alert("KubePodCrashLooping", deployment=f"d{i}")))
            answered[i] = r.status
            await r.read()

        for i in range(60):
            if i == 20:
                server.stop()
            if i == 40:
                server.start()
                for _ in range(50):
                    if (await client.get("/-/ready")).status == 200:
                        break
                    await asyncio.sleep(0.1)
            await send(i)
        assert set(answered.values()) <= {200, 503}
        assert any(code == 503 for code in answered.values())
        assert all(answered[i] == 200 for i in range(40, 60))
        page = await store.history(HistoryQuery(limit=100))
        recorded = {e.meta.params["deployment"] for e in page.items}
        assert {f"d{i}" for i, code in answered.items() if code == 200} <= recorded
    finally:
        await client.close()
        await store.close()
        server.stop()
