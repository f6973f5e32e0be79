"""The store contract: the same behaviour from Redis (a real redis-server) and from SQLite."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from receiver.dedup import AdmissionPlan, plan_admission
from receiver.execution import StepRecord, TimelineEvent, new_execution_id
from receiver.models import parse_payload
from receiver.states import ExecutionStatus, StepStatus
from receiver.store.base import HistoryQuery, Store, StoreLimits
from receiver.store.redis import RedisStore
from receiver.store.sqlite import SQLiteStore
from tests.support import RedisServer, alert, load_rules_text, payload

RULES = """
rules:
  - name: restart
    matchers: ['alertname="Crash"']
    playbook: restart
    params: {deployment: "{{ alert.labels.deployment }}"}
    dedup: {key: "{{ alert.labels.deployment }}", cooldown: 1h}
    on_resolved: cancel
    continue: true
  - name: diagnose
    matchers: ['alertname=~"Crash|Disk"']
    playbook: diagnose
    on_resolved: ignore
"""
NOW = 1_800_000_000.0


@pytest.fixture
def rules(tmp_path: Path) -> tuple[Any, ...]:
    return load_rules_text(tmp_path, RULES)


def plan(rules: tuple[Any, ...], *alerts: dict[str, Any], now: float = NOW) -> AdmissionPlan:
    return plan_admission(parse_payload(payload(*alerts)), rules, now=now, new_id=new_execution_id)


def outcomes(result: Any) -> list[str]:
    return [d.outcome.value for d in result.decided]


async def test_admits_each_matching_rule_once(store: Store, rules: tuple[Any, ...]) -> None:
    """A new firing alert creates one queued execution per matching rule."""
    result = await store.admit(plan(rules, alert("Crash", deployment="web")), NOW)
    assert outcomes(result) == ["admitted", "admitted"]
    e = await store.get(result.decided[0].execution_id)
    assert e is not None
    assert (e.status, e.meta.rule, e.meta.params) == (
        ExecutionStatus.QUEUED,
        "restart",
        {"deployment": "web"},
    )
    assert [t.event for t in e.timeline] == ["queued"]


async def test_same_notification_is_processed_once(store: Store, rules: tuple[Any, ...]) -> None:
    """The same (fingerprint, startsAt, status) again, as a retry, HA peer or re-send, is a duplicate."""
    a = alert("Disk", instance="n1")
    first = await store.admit(plan(rules, a), NOW)
    again = await store.admit(plan(rules, a, now=NOW + 60), NOW + 60)
    assert outcomes(first) == ["admitted"]
    assert outcomes(again) == ["duplicate"]
    page = await store.history(HistoryQuery())
    assert len(page.items) == 1


async def test_new_firing_instance_is_admitted_again(store: Store, rules: tuple[Any, ...]) -> None:
    """The same alert firing again with a new startsAt is a new instance (no cooldown on this rule)."""
    await store.admit(plan(rules, alert("Disk", instance="n1")), NOW)
    later = alert("Disk", instance="n1", starts_at="2026-11-24T12:00:00Z")
    assert outcomes(await store.admit(plan(rules, later), NOW + 10)) == ["admitted"]


async def test_cooldown_suppresses_same_dedup_key(store: Store, rules: tuple[Any, ...]) -> None:
    """Within the cooldown, another alert with the same rule dedup key is suppressed for that rule only."""
    await store.admit(plan(rules, alert("Crash", deployment="web", pod="a")), NOW)
    second = await store.admit(plan(rules, alert("Crash", deployment="web", pod="b")), NOW + 5)
    assert outcomes(second) == ["cooldown", "admitted"]  # restart cools down; diagnose has no cooldown
    other = await store.admit(plan(rules, alert("Crash", deployment="api", pod="c")), NOW + 5)
    assert outcomes(other) == ["admitted", "admitted"]


async def test_cooldown_applies_within_one_payload(store: Store, rules: tuple[Any, ...]) -> None:
    """Two alerts of one payload with the same dedup key: the first is admitted, the second cools down."""
    result = await store.admit(
        plan(rules, alert("Crash", deployment="web", pod="a"), alert("Crash", deployment="web", pod="b")), NOW
    )
    assert outcomes(result) == ["admitted", "admitted", "cooldown", "admitted"]


async def test_cooldown_expires(tmp_path: Path, redis_server: RedisServer) -> None:
    """After the cooldown has passed, the same dedup key is admitted again (real TTLs, both stores)."""
    rules = load_rules_text(
        tmp_path,
        "rules:\n  - name: r\n    playbook: p\n    dedup: {key: k, cooldown: 300ms}\n",
    )
    for s in (
        RedisStore.from_url(redis_server.url, prefix="cooldown-expiry:"),
        SQLiteStore(tmp_path / "c.db"),
    ):
        now = time.time()
        assert outcomes(await s.admit(plan(rules, alert("A", i="1"), now=now), now)) == ["admitted"]
        assert outcomes(await s.admit(plan(rules, alert("A", i="2"), now=now), now)) == ["cooldown"]
        await asyncio.sleep(0.4)
        now = time.time()
        assert outcomes(await s.admit(plan(rules, alert("A", i="3"), now=now), now)) == ["admitted"]
        await s.close()


async def test_resolved_cancels_queued_when_rule_says_cancel(store: Store, rules: tuple[Any, ...]) -> None:
    """A resolution cancels queued executions whose rule says on_resolved: cancel, and marks the rest."""
    firing = alert("Crash", deployment="web")
    admitted = await store.admit(plan(rules, firing), NOW)
    restart_id, diagnose_id = (d.execution_id for d in admitted.decided)
    resolved = {**firing, "status": "resolved", "endsAt": "2026-11-24T10:05:00Z"}
    result = await store.admit(plan(rules, resolved, now=NOW + 5), NOW + 5)
    assert sorted((u.execution_id, u.cancelled) for u in result.resolved) == sorted(
        [(restart_id, True), (diagnose_id, False)]
    )
    restart, diagnose = await store.get(restart_id), await store.get(diagnose_id)
    assert restart is not None and diagnose is not None
    assert restart.status is ExecutionStatus.CANCELLED
    assert diagnose.status is ExecutionStatus.QUEUED
    assert diagnose.resolved_at == datetime(2026, 11, 24, 10, 5, tzinfo=UTC).timestamp()  # endsAt
    assert restart.timeline[-1].event == "cancelled"
    # A second delivery of the same resolution changes nothing.
    assert (await store.admit(plan(rules, resolved, now=NOW + 6), NOW + 6)).resolved == []


async def test_claim_skips_cancelled_and_runs_in_order(store: Store, rules: tuple[Any, ...]) -> None:
    """Claim hands out queued executions oldest first, marks them running, and never a cancelled one."""
    a1 = alert("Crash", deployment="web")
    first = await store.admit(plan(rules, a1), NOW)
    await store.admit(plan(rules, alert("Disk", instance="n1"), now=NOW + 1), NOW + 1)
    await store.admit(plan(rules, {**a1, "status": "resolved"}, now=NOW + 2), NOW + 2)  # cancels restart
    claimed = []
    while (e := await store.claim("c1", 0.2)) is not None:
        claimed.append(e)
    assert [e.meta.playbook for e in claimed] == ["diagnose", "diagnose"]
    assert claimed[0].id == first.decided[1].execution_id
    assert all(e.status is ExecutionStatus.RUNNING and e.started_at for e in claimed)


async def test_each_execution_is_claimed_by_one_consumer(store: Store, rules: tuple[Any, ...]) -> None:
    """Concurrent claimers never receive the same execution."""
    for i in range(10):
        await store.admit(plan(rules, alert("Disk", instance=f"n{i}")), NOW)

    async def drain(name: str) -> list[str]:
        got = []
        while (e := await store.claim(name, 0.2)) is not None:
            got.append(e.id)
        return got

    results = await asyncio.gather(*(drain(f"c{i}") for i in range(4)))
    ids = [i for r in results for i in r]
    assert len(ids) == 10 and len(set(ids)) == 10


async def test_claim_waits_for_new_work(store: Store, rules: tuple[Any, ...]) -> None:
    """A claimer blocked on an empty queue receives work admitted while it waits."""
    waiter = asyncio.create_task(store.claim("c1", 3.0))
    await asyncio.sleep(0.2)
    await store.admit(plan(rules, alert("Disk", instance="n1")), NOW)
    e = await asyncio.wait_for(waiter, 5)
    assert e is not None and e.meta.playbook == "diagnose"


async def test_steps_and_transitions_are_recorded(store: Store, rules: tuple[Any, ...]) -> None:
    """Checkpointed steps and the terminal transition are read back with their timeline."""
    await store.admit(plan(rules, alert("Disk", instance="n1")), NOW)
    e = await store.claim("c1", 1)
    assert e is not None
    step = StepRecord(id="s1", action="script", status=StepStatus.SUCCEEDED, exit_code=0, stdout="ok\n")
    await store.save_steps(e.id, [step], [TimelineEvent(at=NOW + 1, event="step_succeeded", step="s1")])
    assert await store.transition(e.id, ExecutionStatus.SUCCEEDED, now=NOW + 2, error=None)
    assert not await store.transition(e.id, ExecutionStatus.FAILED, now=NOW + 3, error="late")  # terminal
    got = await store.get(e.id)
    assert got is not None
    assert got.status is ExecutionStatus.SUCCEEDED and got.finished_at == NOW + 2 and got.error is None
    assert got.steps == [step]
    assert [t.event for t in got.timeline] == ["queued", "running", "step_succeeded", "succeeded"]


async def test_transition_writes_the_last_checkpoint_before_the_status(
    store: Store, rules: tuple[Any, ...]
) -> None:
    """A transition given the runner's last steps and events writes them in the same call, the
    events before the status's own; refused, it still keeps them and leaves the status alone."""
    await store.admit(plan(rules, alert("Disk", instance="n1")), NOW)
    e = await store.claim("c1", 1)
    assert e is not None
    step = StepRecord(id="s1", action="script", status=StepStatus.SUCCEEDED, exit_code=0)
    ended = [TimelineEvent(at=NOW + 1, event="step_succeeded", step="s1")]
    assert await store.transition(
        e.id, ExecutionStatus.SUCCEEDED, now=NOW + 2, error=None, steps=[step], events=ended
    )
    got = await store.get(e.id)
    assert got is not None and got.steps == [step] and got.status is ExecutionStatus.SUCCEEDED
    assert [t.event for t in got.timeline] == ["queued", "running", "step_succeeded", "succeeded"]
    late = [TimelineEvent(at=NOW + 3, event="hook_failed", step="always[0]")]
    assert not await store.transition(e.id, ExecutionStatus.FAILED, now=NOW + 3, error="x", events=late)
    got = await store.get(e.id)
    assert got is not None and got.status is ExecutionStatus.SUCCEEDED and got.error is None
    assert [t.event for t in got.timeline][-1] == "hook_failed"


async def test_transition_refuses_a_move_the_table_forbids(store: Store, rules: tuple[Any, ...]) -> None:
    """A queued execution cannot jump to succeeded: the store checks states.TRANSITIONS."""
    r = await store.admit(plan(rules, alert("Disk", instance="n1")), NOW)
    assert not await store.transition(
        r.decided[0].execution_id, ExecutionStatus.SUCCEEDED, now=NOW, error=None
    )


async def test_history_filters_newest_first_and_pages(store: Store, rules: tuple[Any, ...]) -> None:
    """History filters by each field, lists newest first, and pages with a cursor without gaps."""
    for i in range(5):
        await store.admit(plan(rules, alert("Disk", instance=f"n{i}"), now=NOW + i), NOW + i)
    await store.admit(plan(rules, alert("Crash", deployment="web"), now=NOW + 10), NOW + 10)

    everything = await store.history(HistoryQuery(limit=100))
    created = [e.meta.created_at for e in everything.items]
    assert created == sorted(created, reverse=True) and len(created) == 7
    assert {e.meta.rule for e in (await store.history(HistoryQuery(rule="restart"))).items} == {"restart"}
    assert len((await store.history(HistoryQuery(playbook="diagnose"))).items) == 6
    assert len((await store.history(HistoryQuery(alertname="Crash"))).items) == 2
    fp = everything.items[-1].meta.alert.fingerprint
    assert [e.meta.alert.fingerprint for e in (await store.history(HistoryQuery(fingerprint=fp))).items] == [
        fp
    ]
    assert len((await store.history(HistoryQuery(since=NOW + 3, until=NOW + 4))).items) == 2
    assert (await store.history(HistoryQuery(status=ExecutionStatus.RUNNING))).items == []

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await store.history(HistoryQuery(limit=3, cursor=cursor))
        seen.extend(e.id for e in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [e.id for e in everything.items]


async def test_history_status_filter_after_claim(store: Store, rules: tuple[Any, ...]) -> None:
    """The status filter sees state changes made after admission."""
    await store.admit(plan(rules, alert("Disk", instance="n1")), NOW)
    await store.admit(plan(rules, alert("Disk", instance="n2")), NOW)
    e = await store.claim("c", 1)
    assert e is not None
    running = await store.history(HistoryQuery(status=ExecutionStatus.RUNNING))
    assert [x.id for x in running.items] == [e.id]


async def test_retention_cap_drops_oldest(tmp_path: Path, redis_server: RedisServer) -> None:
    """Beyond max_executions, the oldest executions leave the history (both stores)."""
    rules = load_rules_text(tmp_path, "rules:\n  - name: r\n    playbook: p\n")
    limits = StoreLimits(max_executions=3)
    for s in (
        RedisStore.from_url(redis_server.url, prefix="retention-cap:", limits=limits),
        SQLiteStore(tmp_path / "r.db", limits=limits),
    ):
        ids = []
        for i in range(5):
            r = await s.admit(plan(rules, alert("A", i=str(i)), now=NOW + i), NOW + i)
            ids.append(r.decided[0].execution_id)
            await s.transition(ids[-1], ExecutionStatus.CANCELLED, now=NOW + i, error="done")
        page = await s.history(HistoryQuery(limit=10))
        assert [e.id for e in page.items] == ids[:1:-1]
        assert await s.get(ids[0]) is None
        await s.close()


async def test_retention_cap_never_drops_live_executions(tmp_path: Path, redis_server: RedisServer) -> None:
    """Past max_executions, queued (or running, or waiting) executions stay: only ended ones
    leave, so a storm of history never loses admitted work."""
    rules = load_rules_text(tmp_path, "rules:\n  - name: r\n    playbook: p\n")
    limits = StoreLimits(max_executions=2)
    for s in (
        RedisStore.from_url(redis_server.url, prefix="retention-live:", limits=limits),
        SQLiteStore(tmp_path / "live.db", limits=limits),
    ):
        ids = []
        for i in range(4):
            r = await s.admit(plan(rules, alert("A", i=str(i)), now=NOW + i), NOW + i)
            ids.append(r.decided[0].execution_id)
        assert all([await s.get(i) is not None for i in ids])
        claimed = [await s.claim("w", 0.5) for _ in ids]
        assert sorted(e.id for e in claimed if e is not None) == sorted(ids)
        await s.close()


async def test_rolling_back_is_not_terminal(store: Store, rules: tuple[Any, ...]) -> None:
    """running -> rolling_back keeps the execution open; rolling_back -> rolled_back ends it."""
    await store.admit(plan(rules, alert("Disk", instance="n1")), NOW)
    e = await store.claim("c", 1)
    assert e is not None
    assert await store.transition(e.id, ExecutionStatus.ROLLING_BACK, now=NOW + 1, error="step 'x' failed")
    mid = await store.get(e.id)
    assert mid is not None and mid.status is ExecutionStatus.ROLLING_BACK and mid.finished_at is None
    assert not await store.transition(e.id, ExecutionStatus.SUCCEEDED, now=NOW + 2, error=None)
    assert await store.transition(e.id, ExecutionStatus.ROLLED_BACK, now=NOW + 3, error=None)
    end = await store.get(e.id)
    assert end is not None and end.finished_at == NOW + 3 and end.error == "step 'x' failed"
