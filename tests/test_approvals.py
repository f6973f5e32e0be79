"""Approval steps: an execution waits for a person without holding a worker, then goes on,
ends rejected, or ends rejected when nobody decides in time. Engine and HTTP API, both stores."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from receiver.app import create_app
from receiver.config import Config, load_config
from receiver.engine import Engine
from receiver.execution import Execution, Verdict
from receiver.metrics import Metrics
from receiver.models import parse_payload
from receiver.states import ExecutionStatus, StepStatus
from receiver.store.base import Store
from tests.support import alert, payload, write_config

RULES = """
rules:
  - name: r
    matchers: ['alertname="A"']
    playbook: p
    on_resolved: cancel
"""

PLAYBOOK = """
name: p
timeout: {timeout}
steps:
  - id: look
    action: script
    with: {{command: ["sh", "-c", "echo looked >> {log}"]}}
  - id: ok
    action: approval
    with: {{message: "restart {{{{ alert.labels.host }}}}? look said {{{{ steps.look.exit_code }}}}", timeout: {wait}}}
  - id: act
    action: script
    with: {{command: ["sh", "-c", "echo acted >> {log}"]}}
on_failure:
  - action: script
    with: {{command: ["sh", "-c", "echo 'hook {{{{ execution.status }}}}' >> {log}"]}}
"""


def make_config(tmp_path: Path, *, wait: str = "1h", timeout: str = "1m") -> Config:
    text = PLAYBOOK.format(log=tmp_path / "log", wait=wait, timeout=timeout)
    return load_config(write_config(tmp_path, rules=RULES, playbooks={"p": text}))


def log_lines(tmp_path: Path) -> list[str]:
    f = tmp_path / "log"
    return f.read_text().splitlines() if f.exists() else []


async def until_parked(config: Config, store: Store) -> tuple[Engine, Execution]:
    """Admit one alert and run it until it waits for approval."""
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
    report = await engine.ingest(parse_payload(payload(alert("A", host="web-1"))))
    claimed = await store.claim("w", 2)
    assert claimed is not None and claimed.id == report.accepted[0]["execution_id"]
    assert await engine.execute(claimed, "w") is ExecutionStatus.WAITING_APPROVAL
    parked = await store.get(claimed.id)
    assert parked is not None
    return engine, parked


async def resume(engine: Engine, store: Store, ident: str) -> Execution:
    """Claim the decided execution again and run it to its end."""
    claimed = await store.claim("w2", 2)
    assert claimed is not None and claimed.id == ident
    await engine.execute(claimed, "w2")
    done = await store.get(ident)
    assert done is not None
    return done


async def test_approval_parks_then_approved_run_goes_on(tmp_path: Path, store: Store) -> None:
    """The execution stops at the approval with the rendered message and frees its worker; once
    approved, a worker resumes it without re-running the step before, and it succeeds."""
    engine, parked = await until_parked(make_config(tmp_path), store)
    assert parked.status is ExecutionStatus.WAITING_APPROVAL
    assert [s.status for s in parked.steps] == [
        StepStatus.SUCCEEDED,
        StepStatus.WAITING_APPROVAL,
        StepStatus.PENDING,
    ]
    assert parked.approval is not None and parked.approval.message == "restart web-1? look said 0"
    assert parked.approval.deadline - parked.approval.requested_at == 3600
    assert await store.claim("idle", 0.3) is None  # no worker holds it, none can take it
    decided = await engine.decide(parked.id, Verdict.APPROVED, by="alice", comment="go ahead")
    assert decided.status is ExecutionStatus.QUEUED
    done = await resume(engine, store, parked.id)
    assert done.status is ExecutionStatus.SUCCEEDED
    assert log_lines(tmp_path) == ["looked", "acted"]  # look ran once
    ok = done.steps[1]
    assert ok.status is StepStatus.SUCCEEDED and ok.stdout == "approved by alice: go ahead\n"
    events = [t.event for t in done.timeline]
    assert events[events.index("approval_requested") :] == [
        "approval_requested",
        "waiting_approval",
        "approved",
        "running",
        "step_succeeded",
        "step_started",
        "step_succeeded",
        "succeeded",
    ]


async def test_rejected_approval_ends_rejected_and_runs_failure_hooks(tmp_path: Path, store: Store) -> None:
    """A rejection ends the execution rejected, with who and why; later steps never run and the
    on_failure hook sees the outcome."""
    engine, parked = await until_parked(make_config(tmp_path), store)
    await engine.decide(parked.id, Verdict.REJECTED, by="bob", comment="not during the release")
    done = await resume(engine, store, parked.id)
    assert done.status is ExecutionStatus.REJECTED
    assert done.error == "approval 'ok' rejected by bob: not during the release"
    assert [s.status for s in done.steps] == [StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED]
    assert log_lines(tmp_path) == ["looked", "hook rejected"]


async def test_undecided_approval_expires_as_rejected(tmp_path: Path, store: Store) -> None:
    """When nobody decides before the approval's timeout, the sweeper rejects it."""
    engine, parked = await until_parked(make_config(tmp_path, wait="300ms"), store)
    assert await engine.expire_approvals() == []
    await asyncio.sleep(0.4)
    assert await engine.expire_approvals() == [parked.id]
    done = await resume(engine, store, parked.id)
    assert done.status is ExecutionStatus.REJECTED
    assert done.error == "approval 'ok' expired: nobody decided before its timeout"
    assert done.steps[1].timed_out
    assert log_lines(tmp_path) == ["looked", "hook rejected"]


async def test_time_waiting_for_approval_is_not_playbook_time(tmp_path: Path, store: Store) -> None:
    """A wait for approval longer than the playbook's timeout does not time the run out."""
    engine, parked = await until_parked(make_config(tmp_path, timeout="1500ms"), store)
    await asyncio.sleep(1.6)
    await engine.decide(parked.id, Verdict.APPROVED, by="alice")
    done = await resume(engine, store, parked.id)
    assert done.status is ExecutionStatus.SUCCEEDED, done.error


async def test_deciding_twice_or_too_early_is_a_conflict(tmp_path: Path, store: Store) -> None:
    """Only an execution waiting for approval can be approved or rejected; the API says why."""
    config = make_config(tmp_path)
    _, parked = await until_parked(config, store)
    client = TestClient(TestServer(create_app(config, store=store, workers=False)))
    await client.start_server()
    try:
        url = f"/api/v1/executions/{parked.id}"
        bad = await client.post(f"{url}/approve", data="[1]")
        assert bad.status == 400 and "body" in (await bad.json())["error"]
        too_long = await client.post(f"{url}/approve", json={"by": "x" * 101})
        assert too_long.status == 400 and (await too_long.json())["param"] == "by"
        r = await client.post(f"{url}/approve", json={"by": " carol ", "comment": "ok"})
        body = await r.json()
        assert r.status == 200 and body["status"] == "queued"
        assert body["approval"]["decision"]["by"] == "carol"
        again = await client.post(f"{url}/reject")
        assert again.status == 409 and "not waiting for approval" in (await again.json())["error"]
        missing = await client.post("/api/v1/executions/nope/approve")
        assert missing.status == 404
    finally:
        await client.close()


async def test_waiting_execution_can_be_cancelled(tmp_path: Path, store: Store) -> None:
    """An operator's cancel ends an execution waiting for approval; nothing resumes it."""
    engine, parked = await until_parked(make_config(tmp_path), store)
    cancelled = await engine.cancel(parked.id)
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert await store.claim("w", 0.3) is None
    assert log_lines(tmp_path) == ["looked"]


async def test_resolved_alert_cancels_the_waiting_execution(tmp_path: Path, store: Store) -> None:
    """The alert resolving while its execution waits for approval cancels it (on_resolved: cancel)."""
    engine, parked = await until_parked(make_config(tmp_path), store)
    resolved = alert("A", host="web-1", status="resolved", ends_at="2026-11-24T10:05:00Z")
    report = await engine.ingest(parse_payload(payload(resolved)))
    assert report.resolved == [{"execution_id": parked.id, "cancelled": True}]
    done = await store.get(parked.id)
    assert done is not None and done.status is ExecutionStatus.CANCELLED


async def test_workers_and_sweeper_carry_an_approval_through(tmp_path: Path, store: Store) -> None:
    """With the app's own workers: the API approves and a worker finishes the run."""
    config = make_config(tmp_path)
    client = TestClient(TestServer(create_app(config, store=store)))
    await client.start_server()
    try:
        r = await client.post("/webhook", json=payload(alert("A", host="web-1")))
        ident = (await r.json())["accepted"][0]["execution_id"]

        async def status() -> Any:
            return (await (await client.get(f"/api/v1/executions/{ident}")).json())["status"]

        deadline = time.monotonic() + 10
        while await status() != "waiting_approval" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert (await client.post(f"/api/v1/executions/{ident}/approve")).status == 200
        while await status() != "succeeded" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await status() == "succeeded"
        metrics = await (await client.get("/metrics")).text()
        assert 'receiver_approvals_total{event="approved"} 1.0' in metrics
    finally:
        await client.close()


async def test_approval_tells_its_notifiers_how_to_answer(tmp_path: Path, store: Store) -> None:
    """An approval with `notify` sends its message with the approve and reject URLs to the named
    notifiers (a JSON webhook here); a notifier the config lacks is a load-time error."""
    from receiver.errors import ConfigErrors
    from tests.support import Recorder

    text = """name: p
steps:
  - id: ok
    action: approval
    with: {message: "restart {{ alert.labels.host }}?", notify: [oncall]}
"""
    async with Recorder((200, {})) as hook:
        settings = f"notifiers: {{oncall: {{urls: ['{hook.url.replace('http://', 'json://')}/a']}}}}\n"
        config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": text}, settings=settings))
        _, parked = await until_parked(config, store)
    sent = hook.requests[0]["body"]
    assert sent["title"] == "Approval needed: A · p" and sent["type"] == "warning"
    assert sent["message"].startswith("restart web-1?\nApprove: POST ")
    assert f"/api/v1/executions/{parked.id}/reject" in sent["message"]
    assert "approval_notified" in [t.event for t in parked.timeline]
    other = tmp_path / "without-notifiers"
    other.mkdir()
    with pytest.raises(ConfigErrors, match=r"with\.notify: unknown notifier 'oncall'"):
        load_config(write_config(other, rules=RULES, playbooks={"p": text}))
