"""Per-rule circuit breakers: a rule that ran rate_limit.max times within rate_limit.per, or
failed rate_limit.failures times in a row, stops remediating and escalates, until the window
passes or an operator resets it. Store contract on both stores, then the engine and the API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from receiver.app import create_app
from receiver.config import load_config
from receiver.dedup import plan_admission
from receiver.engine import Engine
from receiver.execution import new_execution_id
from receiver.metrics import Metrics
from receiver.models import parse_payload
from receiver.store.base import Store
from tests.support import Recorder, alert, load_rules_text, payload, write_config

RULES = """
rules:
  - name: restart
    matchers: ['alertname="Crash"']
    playbook: p
    rate_limit: {max: 2, per: 600ms, failures: 2, notify: [oncall]}
"""
PLAYBOOK = "name: p\nsteps:\n  - id: s\n    action: script\n    with: {command: [\"{{ alert.labels.cmd | default('true') }}\"]}\n"
_n = iter(range(10**6))


def fresh(**labels: str) -> dict[str, Any]:
    """A new firing instance (its own startsAt), so it is never a duplicate."""
    i = next(_n)
    return alert("Crash", starts_at=f"2026-11-24T10:{i // 60 % 60:02d}:{i % 60:02d}Z", **labels)


async def outcome(store: Store, rules: Any, **labels: str) -> str:
    plan = plan_admission(
        parse_payload(payload(fresh(**labels))), rules, now=time.time(), new_id=new_execution_id
    )
    return (await store.admit(plan, time.time())).decided[0].outcome.value


async def test_rate_limit_opens_the_breaker_until_the_window_passes(store: Store, tmp_path: Path) -> None:
    """Two runs within the window go through; the third is rate_limited (the breaker opens), the
    next circuit_open; once the window has passed, runs go through again."""
    rules = load_rules_text(tmp_path, RULES)
    assert [await outcome(store, rules) for _ in range(4)] == [
        "admitted",
        "admitted",
        "rate_limited",
        "circuit_open",
    ]
    assert "restart" in await store.breakers(["restart"], time.time())
    await asyncio.sleep(0.7)
    assert await store.breakers(["restart"], time.time()) == {}
    assert await outcome(store, rules) == "admitted"


async def test_operator_reset_closes_the_breaker(store: Store, tmp_path: Path) -> None:
    """A reset closes an open breaker and clears the window: the rule remediates again at once."""
    rules = load_rules_text(tmp_path, RULES)
    for _ in range(3):
        await outcome(store, rules)
    assert await store.reset_breaker("restart") is True
    assert await outcome(store, rules) == "admitted"
    assert await store.reset_breaker("restart") is False


async def test_failures_in_a_row_open_the_breaker(store: Store, tmp_path: Path) -> None:
    """The failures-th failure in a row opens the breaker; a success in between starts the count over."""
    rules = load_rules_text(tmp_path, RULES)
    note = store.note_outcome
    assert not await note("restart", failed=True, failures=2, per_s=60, now=time.time())
    assert not await note("restart", failed=False, failures=2, per_s=60, now=time.time())
    assert not await note("restart", failed=True, failures=2, per_s=60, now=time.time())
    assert await note("restart", failed=True, failures=2, per_s=60, now=time.time())
    assert await outcome(store, rules) == "circuit_open"


async def test_breaker_escalates_and_the_api_shows_and_resets_it(tmp_path: Path, store: Store) -> None:
    """Two failed runs in a row open the breaker: the rule's notifier hears it with the reset URL,
    GET /api/v1/rules shows until when it is open, new alerts are suppressed as circuit_open, and
    POST /api/v1/rules/restart/reset closes it."""
    async with Recorder((200, {})) as hook:
        settings = f"notifiers: {{oncall: {{urls: ['{hook.url.replace('http://', 'json://')}/x']}}}}\n"
        config = load_config(
            write_config(
                tmp_path, rules=RULES.replace("600ms", "1h"), playbooks={"p": PLAYBOOK}, settings=settings
            )
        )
        engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
        for _ in range(2):
            await engine.ingest(parse_payload(payload(fresh(cmd="false"))))
            claimed = await store.claim("w", 2)
            assert claimed is not None
            await engine.execute(claimed, "w")
        for _ in range(50):
            if hook.requests:
                break
            await asyncio.sleep(0.05)
        sent = hook.requests[0]["body"]
        assert sent["title"] == "Remediation paused: rule restart"
        assert (
            "failed 2 times in a row" in sent["message"] and "/api/v1/rules/restart/reset" in sent["message"]
        )
        report = await engine.ingest(parse_payload(payload(fresh())))
        assert report.suppressed[0]["reason"] == "circuit_open"
        client = TestClient(TestServer(create_app(config, store=store, workers=False)))
        await client.start_server()
        try:
            rules = (await (await client.get("/api/v1/rules")).json())["rules"]
            assert rules[0]["circuit_open_until"] is not None and rules[0]["rate_limit"]["failures"] == 2
            r = await client.post("/api/v1/rules/restart/reset")
            assert (await r.json()) == {"rule": "restart", "was_open": True}
            rules = (await (await client.get("/api/v1/rules")).json())["rules"]
            assert rules[0]["circuit_open_until"] is None
            assert (await client.post("/api/v1/rules/nope/reset")).status == 404
        finally:
            await client.close()
    assert (await engine.ingest(parse_payload(payload(fresh())))).accepted
