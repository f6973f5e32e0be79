"""The store contract for parking, resuming and holding apart executions, on Redis and SQLite:
approvals (park, decide, deadlines), reclaiming the work of a silent worker, and locks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from receiver.dedup import AdmissionPlan, plan_admission
from receiver.execution import Approval, Decision, Verdict, new_execution_id
from receiver.models import parse_payload
from receiver.states import ExecutionStatus
from receiver.store.base import Store, StoreLimits
from tests.conftest import MakeStore
from tests.support import RedisServer, alert, load_rules_text, payload, write_config

RULES = """
rules:
  - name: fix
    matchers: ['alertname="Crash"']
    playbook: fix
    on_resolved: cancel
"""


@pytest.fixture
def rules(tmp_path: Path) -> tuple[Any, ...]:
    return load_rules_text(tmp_path, RULES)


def plan(rules: tuple[Any, ...], *alerts: dict[str, Any], now: float | None = None) -> AdmissionPlan:
    return plan_admission(
        parse_payload(payload(*alerts)), rules, now=now or time.time(), new_id=new_execution_id
    )


async def admit_and_claim(store: Store, rules: tuple[Any, ...], consumer: str = "w1", **labels: str) -> str:
    await store.admit(plan(rules, alert("Crash", **labels)), time.time())
    e = await store.claim(consumer, 1)
    assert e is not None and e.status is ExecutionStatus.RUNNING
    return e.id


def request(step: str = "ok", deadline_in: float = 3600.0) -> Approval:
    now = time.time()
    return Approval(step=step, message="restart web?", requested_at=now, deadline=now + deadline_in)


async def test_parked_execution_waits_without_a_worker_and_resumes_with_the_decision(
    store: Store, rules: tuple[Any, ...]
) -> None:
    """await_approval parks a running execution; nothing claims it until decide queues it again
    with the decision, which the resumed execution carries."""
    ident = await admit_and_claim(store, rules, host="a")
    assert await store.await_approval(ident, request(), now=time.time())
    parked = await store.get(ident)
    assert parked is not None and parked.status is ExecutionStatus.WAITING_APPROVAL
    assert parked.approval is not None and parked.approval.message == "restart web?"
    assert await store.claim("w2", 0.3) is None
    decision = Decision(verdict=Verdict.APPROVED, by="alice", at=time.time(), comment="go")
    assert await store.decide(ident, decision, now=time.time())
    assert not await store.decide(ident, decision, now=time.time())  # only once
    resumed = await store.claim("w2", 1)
    assert resumed is not None and resumed.id == ident and resumed.status is ExecutionStatus.RUNNING
    assert resumed.approval is not None and resumed.approval.decision == decision
    events = [t.event for t in resumed.timeline]
    assert events == ["queued", "running", "waiting_approval", "approved", "running"]
    assert resumed.started_at == parked.started_at  # the first start stays the start


async def test_decide_refuses_an_execution_that_is_not_waiting(store: Store, rules: tuple[Any, ...]) -> None:
    """Deciding a running execution changes nothing."""
    ident = await admit_and_claim(store, rules, host="a")
    decision = Decision(verdict=Verdict.REJECTED, by="bob", at=time.time())
    assert not await store.decide(ident, decision, now=time.time())
    got = await store.get(ident)
    assert got is not None and got.status is ExecutionStatus.RUNNING and got.approval is None


async def test_expired_approvals_lists_only_past_deadlines(store: Store, rules: tuple[Any, ...]) -> None:
    """Only executions still waiting and past their approval deadline are listed."""
    soon = await admit_and_claim(store, rules, host="a")
    later = await admit_and_claim(store, rules, host="b")
    await store.await_approval(soon, request(deadline_in=0.2), now=time.time())
    await store.await_approval(later, request(deadline_in=3600), now=time.time())
    assert await store.expired_approvals(time.time()) == []
    await asyncio.sleep(0.3)
    assert await store.expired_approvals(time.time()) == [soon]
    await store.decide(
        soon, Decision(verdict=Verdict.EXPIRED, by="receiver", at=time.time()), now=time.time()
    )
    assert await store.expired_approvals(time.time()) == []


async def test_resolution_cancels_an_execution_waiting_for_approval(
    store: Store, rules: tuple[Any, ...]
) -> None:
    """An alert that resolves while its execution waits for approval cancels it (on_resolved: cancel)."""
    firing = alert("Crash", host="a")
    await store.admit(plan(rules, firing), time.time())
    e = await store.claim("w1", 1)
    assert e is not None
    await store.await_approval(e.id, request(deadline_in=0.1), now=time.time())
    result = await store.admit(plan(rules, {**firing, "status": "resolved"}), time.time())
    assert [(u.execution_id, u.cancelled) for u in result.resolved] == [(e.id, True)]
    got = await store.get(e.id)
    assert got is not None and got.status is ExecutionStatus.CANCELLED
    await asyncio.sleep(0.2)
    assert await store.expired_approvals(time.time()) == []  # its deadline is forgotten


async def test_silent_worker_loses_its_execution_to_another(
    make_store: MakeStore, rules: tuple[Any, ...]
) -> None:
    """An execution whose worker stops heartbeating is handed, as it stands, to the next claimer
    once reclaim_after_s passes; the old worker's heartbeat then says it no longer holds it."""
    store = make_store(StoreLimits(reclaim_after_s=0.5))
    ident = await admit_and_claim(store, rules, "dead", host="a")
    assert await store.claim("alive", 0.2) is None  # not yet idle long enough
    await asyncio.sleep(0.6)
    taken = await store.claim("alive", 0.5)
    assert taken is not None and taken.id == ident and taken.status is ExecutionStatus.RUNNING
    assert taken.timeline[-1].event == "resumed"
    lease = await store.heartbeat(ident, "dead")
    assert (lease.status, lease.held) == (ExecutionStatus.RUNNING, False)
    assert (await store.heartbeat(ident, "alive")).held


async def test_heartbeat_keeps_an_execution_from_being_reclaimed(
    make_store: MakeStore, rules: tuple[Any, ...]
) -> None:
    """A worker that heartbeats keeps its execution however long it runs."""
    store = make_store(StoreLimits(reclaim_after_s=0.5))
    ident = await admit_and_claim(store, rules, "busy", host="a")
    for _ in range(4):
        await asyncio.sleep(0.3)
        lease = await store.heartbeat(ident, "busy")
        assert lease.held and lease.status is ExecutionStatus.RUNNING
        assert await store.claim("other", 0.05) is None


async def test_terminal_execution_is_never_reclaimed(make_store: MakeStore, rules: tuple[Any, ...]) -> None:
    """Once an execution ended, no worker takes it again, however long ago its worker went quiet."""
    store = make_store(StoreLimits(reclaim_after_s=0.3))
    ident = await admit_and_claim(store, rules, "w1", host="a")
    assert await store.transition(ident, ExecutionStatus.SUCCEEDED, now=time.time(), error=None)
    await asyncio.sleep(0.4)
    assert await store.claim("w2", 0.2) is None


LOCKED = """
name: fix
lock: "{{{{ alert.labels.host }}}}"
lock_policy: {policy}
steps:
  - id: s
    action: script
    with: {{command: ["true"]}}
"""


_instances = iter(range(10**6))


def locked_plan(tmp_path: Path, policy: str, host: str) -> AdmissionPlan:
    """A new firing instance (its own startsAt) of a Crash alert for `host`, routed to `fix`."""
    from receiver.config import load_config

    starts = f"2026-11-24T10:{next(_instances) % 60:02d}:00Z"

    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"fix": LOCKED.format(policy=policy)}))
    return plan_admission(
        parse_payload(payload(alert("Crash", host=host, starts_at=starts))),
        config.rules,
        now=time.time(),
        new_id=new_execution_id,
        playbooks=config.playbooks,
    )


async def test_lock_wait_runs_one_per_target_in_order(store: Store, tmp_path: Path) -> None:
    """With lock_policy wait, a second execution for the same target waits until the first ends,
    then runs; another target is not held up."""
    first = (await store.admit(locked_plan(tmp_path, "wait", "web-1"), time.time())).decided[0].execution_id
    second = (await store.admit(locked_plan(tmp_path, "wait", "web-1"), time.time())).decided[0].execution_id
    other = (await store.admit(locked_plan(tmp_path, "wait", "db-1"), time.time())).decided[0].execution_id
    a = await store.claim("w", 1)
    assert a is not None and a.id == first and a.meta.lock == "web-1"
    b = await store.claim("w", 0.3)
    assert b is not None and b.id == other  # the second web-1 waits; db-1 goes ahead
    assert await store.claim("w", 0.3) is None
    waiting = await store.get(second)
    assert waiting is not None and waiting.status is ExecutionStatus.QUEUED
    assert waiting.timeline[-1].event == "waiting_lock" and first in (waiting.timeline[-1].detail or "")
    assert await store.transition(first, ExecutionStatus.SUCCEEDED, now=time.time(), error=None)
    c = await store.claim("w", 1)
    assert c is not None and c.id == second


async def test_lock_is_kept_while_waiting_for_approval(store: Store, tmp_path: Path) -> None:
    """An execution parked on an approval still holds its target's lock."""
    first = (await store.admit(locked_plan(tmp_path, "wait", "web-1"), time.time())).decided[0].execution_id
    await store.admit(locked_plan(tmp_path, "wait", "web-1"), time.time())
    assert (await store.claim("w", 1)) is not None
    assert await store.await_approval(first, request(), now=time.time())
    assert await store.claim("w", 0.3) is None
    assert await store.transition(first, ExecutionStatus.CANCELLED, now=time.time(), error="no")
    assert await store.claim("w", 1) is not None


async def test_lock_skip_cancels_the_second_execution(store: Store, tmp_path: Path) -> None:
    """With lock_policy skip, an execution whose target is locked ends cancelled, saying by whom."""
    first = (await store.admit(locked_plan(tmp_path, "skip", "web-1"), time.time())).decided[0].execution_id
    second = (await store.admit(locked_plan(tmp_path, "skip", "web-1"), time.time())).decided[0].execution_id
    assert (await store.claim("w", 1)) is not None
    assert await store.claim("w", 0.3) is None
    skipped = await store.get(second)
    assert skipped is not None and skipped.status is ExecutionStatus.CANCELLED
    assert skipped.error == f"skipped: lock web-1 is held by execution {first}"
    assert await store.transition(first, ExecutionStatus.SUCCEEDED, now=time.time(), error=None)
    assert await store.claim("w", 0.3) is None  # nothing was waiting


async def next_one_takes_the_lock(store: Store, tmp_path: Path) -> None:
    """A new execution for the same target is admitted and, the old holder being gone, starts."""
    second = (await store.admit(locked_plan(tmp_path, "wait", "web-1"), time.time())).decided[0].execution_id
    got = await store.claim("w", 1)
    assert got is not None and got.id == second


async def test_lock_whose_holder_is_gone_is_taken(tmp_path: Path, redis_server: RedisServer) -> None:
    """A lock whose holder's record no longer exists (on Redis, expired with the history's
    retention while it waited far longer than that) does not hold its target forever: the next
    execution takes it."""
    from receiver.store.redis import RedisStore

    store = RedisStore.from_url(redis_server.url, prefix="stale-lock:", limits=StoreLimits(retention_s=0.3))
    try:
        await store.admit(locked_plan(tmp_path, "wait", "web-1"), time.time())
        holder = await store.claim("w", 1)
        assert holder is not None
        await asyncio.sleep(0.4)  # the running holder's record expires with the retention
        assert await store.get(holder.id) is None
        await next_one_takes_the_lock(store, tmp_path)
    finally:
        await store.close()


@pytest.mark.parametrize("gone", ["deleted", "ended"])
async def test_sqlite_lock_whose_holder_is_gone_or_ended_is_taken(tmp_path: Path, gone: str) -> None:
    """On SQLite too, a lock row left behind by a holder whose record is gone (a database edited or
    restored by hand) or that ended without freeing it does not hold its target: the next
    execution for the target takes the lock and starts."""
    import sqlite3

    from receiver.store.sqlite import SQLiteStore

    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    try:
        await store.admit(locked_plan(tmp_path, "wait", "web-1"), time.time())
        holder = await store.claim("w", 1)
        assert holder is not None
        with sqlite3.connect(path) as db:  # another connection, as a person with sqlite3 would
            if gone == "deleted":
                db.execute("DELETE FROM executions WHERE id = ?", (holder.id,))
            else:
                db.execute("UPDATE executions SET status = 'failed' WHERE id = ?", (holder.id,))
            assert db.execute("SELECT holder FROM locks").fetchall() == [(holder.id,)]
        await next_one_takes_the_lock(store, tmp_path)
    finally:
        await store.close()


async def test_admission_past_the_queue_bound_is_refused_whole(
    make_store: MakeStore, rules: tuple[Any, ...]
) -> None:
    """With max_queued reached, a payload with new work is refused (Overloaded) and nothing of
    it is recorded, not even its idempotency key, so the retry is admitted once room is made;
    a resolution still goes through."""
    from receiver.errors import Overloaded

    store = make_store(StoreLimits(max_queued=2))
    await store.admit(plan(rules, alert("Crash", host="a")), time.time())
    await store.admit(plan(rules, alert("Crash", host="b")), time.time())
    third = plan(rules, alert("Crash", host="c"))
    with pytest.raises(Overloaded, match="limit 2"):
        await store.admit(third, time.time())
    resolved = plan(rules, alert("Crash", host="a", status="resolved"))
    assert (await store.admit(resolved, time.time())).resolved  # resolutions are never refused
    e = await store.claim("w", 1)  # the resolution cancelled host a: only host b can run
    assert e is not None
    await store.transition(e.id, ExecutionStatus.SUCCEEDED, now=time.time(), error=None)
    assert [d.outcome.value for d in (await store.admit(third, time.time())).decided] == ["admitted"]
