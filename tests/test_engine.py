"""The engine: workers claim executions and run their steps in order, recording everything."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from receiver.config import Config, load_config
from receiver.engine import Engine
from receiver.execution import Execution, Verdict
from receiver.metrics import Metrics
from receiver.models import parse_payload
from receiver.states import ExecutionStatus, StepStatus
from receiver.store.base import Store
from tests.support import PROJECT, alert, claim_and_run, payload, write_config

PY = sys.executable
RULES = """
rules:
  - name: r
    matchers: ['alertname="A"']
    playbook: p
    params: {target: "{{ alert.labels.target }}"}
"""


def config_with(tmp_path: Path, steps: str, timeout: str = "1m") -> Config:
    return load_config(
        write_config(tmp_path, rules=RULES, playbooks={"p": f"name: p\ntimeout: {timeout}\nsteps:\n{steps}"})
    )


async def run_one(config: Config, store: Store, **labels: str) -> Execution:
    """Admit one alert and run it to the end with one worker."""
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="test")
    report = await engine.ingest(parse_payload(payload(alert("A", **labels))))
    assert len(report.accepted) == 1, report
    done: Execution = await claim_and_run(engine, store)
    return done


async def test_steps_run_in_order_and_see_earlier_outputs(tmp_path: Path, store: Store) -> None:
    """Steps run in file order; a later step reads an earlier one's stdout and parsed JSON."""
    steps = f"""  - id: first
    action: script
    with: {{command: ["{PY}", "-c", "import json; print(json.dumps({{'n': 41}}))"]}}
  - id: second
    action: script
    with: {{command: ["echo", "{{{{ steps.first.json.n + 1 }}}} {{{{ params.target }}}} {{{{ steps.first.exit_code }}}}"]}}
"""
    e = await run_one(config_with(tmp_path, steps), store, target="web")
    assert e.status is ExecutionStatus.SUCCEEDED
    assert [s.status for s in e.steps] == [StepStatus.SUCCEEDED, StepStatus.SUCCEEDED]
    assert e.steps[1].stdout == "42 web 0\n"
    events = [(t.event, t.step) for t in e.timeline]
    assert events == [
        ("queued", None),
        ("running", None),
        ("step_started", "first"),
        ("step_succeeded", "first"),
        ("step_started", "second"),
        ("step_succeeded", "second"),
        ("succeeded", None),
    ]
    assert all(s.started_at and s.finished_at and s.finished_at >= s.started_at for s in e.steps)


async def test_failed_step_fails_execution_and_cancels_the_rest(tmp_path: Path, store: Store) -> None:
    """A failing step ends the execution failed with its exit code and stderr; later steps never run."""
    steps = f"""  - id: bad
    action: script
    with: {{command: ["{PY}", "-c", "import sys; sys.stderr.write('disk busy'); sys.exit(4)"]}}
  - id: never
    action: script
    with: {{command: ["echo", "should not run"]}}
"""
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    assert e.status is ExecutionStatus.FAILED
    assert e.error == "step 'bad' failed: exit code 4"
    assert (e.steps[0].exit_code, e.steps[0].stderr) == (4, "disk busy")
    assert e.steps[1].status is StepStatus.CANCELLED and e.steps[1].started_at is None


async def test_step_timeout_ends_timed_out(tmp_path: Path, store: Store) -> None:
    """A step that exceeds its timeout is killed and the execution ends timed_out."""
    steps = """  - id: slow
    action: script
    timeout: 300ms
    with: {command: ["sleep", "30"]}
"""
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    assert e.status is ExecutionStatus.TIMED_OUT
    assert e.steps[0].timed_out and "timed out after 0.3s" in (e.error or "")


async def test_playbook_timeout_bounds_all_steps(tmp_path: Path, store: Store) -> None:
    """The playbook's timeout caps the steps together, even when each step has no timeout."""
    steps = """  - id: a
    action: script
    with: {command: ["sleep", "0.3"]}
  - id: b
    action: script
    with: {command: ["sleep", "30"]}
"""
    e = await run_one(config_with(tmp_path, steps, timeout="600ms"), store, target="x")
    assert e.status is ExecutionStatus.TIMED_OUT
    assert e.steps[0].status is StepStatus.SUCCEEDED and e.steps[1].timed_out


async def test_alert_reaches_script_as_environment(tmp_path: Path, store: Store) -> None:
    """Labels, params and the execution id reach the script as environment variables, names
    escaped, and each step's process sees its own step id as RECEIVER_STEP."""
    steps = """  - id: env
    action: script
    with: {command: ["sh", "-c", 'echo "$ALERT_NAME|$ALERT_LABEL_TARGET|$PARAM_TARGET|$ALERT_LABEL_ODD_NAME_|$RECEIVER_EXECUTION_ID|$RECEIVER_STEP"']}
  - id: second
    action: script
    with: {command: ["sh", "-c", 'echo "$RECEIVER_STEP"']}
"""
    labels = {"target": "db-1; rm -rf /", "odd.name!": "v"}
    e = await run_one(config_with(tmp_path, steps), store, **labels)
    assert e.steps[0].stdout == f"A|db-1; rm -rf /|db-1; rm -rf /|v|{e.id}|env\n"
    assert e.steps[1].stdout == "second\n"


async def test_render_error_fails_the_step_with_a_reason(tmp_path: Path, store: Store) -> None:
    """A `with:` template that fails at run time fails its step and names the undefined value."""
    steps = """  - id: s
    action: script
    with: {command: ["echo", "{{ steps.nothing.stdout }}"]}
"""
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    assert e.status is ExecutionStatus.FAILED
    assert "steps.nothing" in (e.steps[0].error or "") or "nothing" in (e.steps[0].error or "")


async def test_workers_run_queued_executions(tmp_path: Path, store: Store) -> None:
    """Started workers pick up admitted executions by themselves and finish them."""
    steps = """  - id: s
    action: script
    with: {command: ["true"]}
"""
    engine = Engine(config=config_with(tmp_path, steps), store=store, metrics=Metrics(), consumer="t")
    engine.start()
    try:
        report = await engine.ingest(parse_payload(payload(*(alert("A", target=str(i)) for i in range(6)))))
        ids = [a["execution_id"] for a in report.accepted]
        assert len(ids) == 6
        for _ in range(100):
            got = [await store.get(i) for i in ids]
            if all(g is not None and g.status.terminal for g in got):
                break
            await asyncio.sleep(0.05)
        assert all(g is not None and g.status is ExecutionStatus.SUCCEEDED for g in got)
    finally:
        await engine.stop()


async def test_unrouted_and_template_failures_are_reported(tmp_path: Path, store: Store) -> None:
    """Alerts no rule matches are listed as unrouted; a rule whose params fail is listed as rejected."""
    steps = """  - id: s
    action: script
    with: {command: ["true"]}
"""
    engine = Engine(config=config_with(tmp_path, steps), store=store, metrics=Metrics(), consumer="t")
    report = await engine.ingest(parse_payload(payload(alert("Other"), alert("A"))))
    assert [u["alertname"] for u in report.unrouted] == ["Other"]
    assert report.rejected[0]["rule"] == "r" and "target" in report.rejected[0]["error"]
    assert report.accepted == []


DIAMOND = """  - id: a
    action: script
    with: {command: ["true"]}
  - id: b
    needs: [a]
    action: script
    with: {command: ["sleep", "0.4"]}
  - id: c
    needs: [a]
    action: script
    with: {command: ["SLOW_C", "0.4"]}
  - id: d
    needs: [b, c]
    action: script
    with: {command: ["echo", "joined after {{ steps.b.status }} and {{ steps.c.status }}"]}
"""


def overlap(x: Any, y: Any) -> bool:
    return bool(x.started_at < y.finished_at and y.started_at < x.finished_at)


async def test_parallel_branches_run_together_and_join(tmp_path: Path, store: Store) -> None:
    """Steps whose needs are met run at the same time; a step needing both starts after both end."""
    e = await run_one(config_with(tmp_path, DIAMOND.replace("SLOW_C", "sleep")), store, target="x")
    a, b, c, d = e.steps
    assert e.status is ExecutionStatus.SUCCEEDED
    assert overlap(b, c)
    assert b.started_at >= a.finished_at and c.started_at >= a.finished_at
    assert d.started_at >= max(b.finished_at, c.finished_at)
    assert d.stdout == "joined after succeeded and succeeded\n"


async def test_max_parallel_caps_concurrency(tmp_path: Path, store: Store) -> None:
    """With max_parallel: 1, ready branches run one after the other."""
    steps = DIAMOND.replace("SLOW_C", "sleep")
    config = load_config(
        write_config(tmp_path, rules=RULES, playbooks={"p": f"name: p\nmax_parallel: 1\nsteps:\n{steps}"})
    )
    e = await run_one(config, store, target="x")
    _, b, c, _ = e.steps
    assert e.status is ExecutionStatus.SUCCEEDED and not overlap(b, c)


async def test_failed_branch_lets_running_sibling_finish_and_cancels_join(
    tmp_path: Path, store: Store
) -> None:
    """When one branch fails, the sibling already running finishes, and nothing new starts."""
    steps = DIAMOND.replace('["SLOW_C", "0.4"]', '["false"]')
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    status = {s.id: s.status for s in e.steps}
    assert status == {
        "a": StepStatus.SUCCEEDED,
        "b": StepStatus.SUCCEEDED,
        "c": StepStatus.FAILED,
        "d": StepStatus.CANCELLED,
    }
    assert e.status is ExecutionStatus.FAILED and e.error == "step 'c' failed: exit code 1"


async def test_when_false_skips_and_dependents_still_run(tmp_path: Path, store: Store) -> None:
    """A step whose `when` is false is skipped; the step after it still runs and sees the skip."""
    steps = """  - id: check
    action: script
    with: {command: ["sh", "-c", "echo '{\\"unhealthy\\": false}'"]}
  - id: restart
    when: steps.check.json.unhealthy
    action: script
    with: {command: ["echo", "restarting"]}
  - id: report
    action: script
    with: {command: ["echo", "restart was {{ steps.restart.status }}"]}
"""
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    assert [s.status for s in e.steps] == [StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.SUCCEEDED]
    assert e.steps[1].started_at is None and e.steps[2].stdout == "restart was skipped\n"
    assert ("step_skipped", "restart") in [(t.event, t.step) for t in e.timeline]
    assert e.status is ExecutionStatus.SUCCEEDED


async def test_when_error_fails_the_step_naming_the_variable(tmp_path: Path, store: Store) -> None:
    """A `when` that names an undefined variable fails its step with that name."""
    steps = """  - id: s
    when: steps.ghost.exit_code == 0
    action: script
    with: {command: ["true"]}
"""
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    assert e.status is ExecutionStatus.FAILED
    assert "ghost" in (e.steps[0].error or "")


FLAKY = """  - id: flaky
    retry: {attempts: ATTEMPTS, backoff: 100ms, max_backoff: 1s}
    action: script
    with: {command: ["sh", "-c", "n=$(cat COUNTER 2>/dev/null || echo 0); n=$((n+1)); echo $n > COUNTER; echo try $n; [ $n -ge 3 ]"]}
"""


async def test_retry_until_success_with_backoff(tmp_path: Path, store: Store) -> None:
    """A step failing twice then succeeding is retried with growing pauses and ends succeeded."""
    steps = FLAKY.replace("ATTEMPTS", "4").replace("COUNTER", str(tmp_path / "count"))
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    step = e.steps[0]
    assert e.status is ExecutionStatus.SUCCEEDED
    assert (step.attempts, step.stdout) == (3, "try 3\n")
    retries = [t for t in e.timeline if t.event == "step_retrying"]
    assert [t.detail.split(";")[0] for t in retries if t.detail] == [
        "attempt 1 failed: exit code 1",
        "attempt 2 failed: exit code 1",
    ]
    # Jittered backoff of 100ms then 200ms: at least half of each was waited.
    assert step.finished_at - step.started_at >= 0.05 + 0.1
    assert retries[0].at < retries[1].at


async def test_retry_exhausted_fails(tmp_path: Path, store: Store) -> None:
    """When every attempt fails, the step fails with the last attempt's error and its count."""
    steps = FLAKY.replace("ATTEMPTS", "2").replace("COUNTER", str(tmp_path / "count"))
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    assert e.status is ExecutionStatus.FAILED
    assert (e.steps[0].attempts, e.steps[0].stdout) == (2, "try 2\n")


async def test_continue_on_error_lets_the_run_go_on(tmp_path: Path, store: Store) -> None:
    """A failed step marked continue_on_error does not fail the execution or stop the next step."""
    steps = """  - id: optional
    continue_on_error: true
    action: script
    with: {command: ["false"]}
  - id: main
    action: script
    with: {command: ["echo", "optional {{ steps.optional.status }}"]}
"""
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    assert e.status is ExecutionStatus.SUCCEEDED and e.error is None
    assert e.steps[0].status is StepStatus.FAILED and e.steps[1].stdout == "optional failed\n"


ROLLBACK = """  - id: drain
    action: script
    with: {command: ["echo", "drained"]}
    rollback: {action: script, with: {command: ["sh", "-c", "echo undrain >> LOG"]}}
  - id: scale
    action: script
    with: {command: ["echo", "scaled"]}
    rollback: {action: script, with: {command: ["sh", "-c", "echo unscale >> LOG; exit RC"]}}
  - id: note
    action: script
    with: {command: ["true"]}
  - id: deploy
    action: script
    with: {command: ["sh", "-c", "echo boom >&2; exit 2"]}
    rollback: {action: script, with: {command: ["sh", "-c", "echo never >> LOG"]}}
"""


async def test_failure_rolls_back_succeeded_steps_in_reverse(tmp_path: Path, store: Store) -> None:
    """After a failed step, the rollbacks of the steps that succeeded run latest first: rolled_back."""
    log = tmp_path / "rollback.log"
    e = await run_one(
        config_with(tmp_path, ROLLBACK.replace("LOG", str(log)).replace("RC", "0")), store, target="x"
    )
    assert e.status is ExecutionStatus.ROLLED_BACK
    assert e.error == "step 'deploy' failed: exit code 2"  # the cause stays recorded
    assert log.read_text() == "unscale\nundrain\n"  # the failed step's own rollback never runs
    assert [s.rollback.status if s.rollback else None for s in e.steps] == [
        StepStatus.SUCCEEDED,
        StepStatus.SUCCEEDED,
        None,
        None,
    ]
    events = [t.event for t in e.timeline]
    assert events[-6:] == [
        "rolling_back",
        "rollback_started",
        "rollback_succeeded",
        "rollback_started",
        "rollback_succeeded",
        "rolled_back",
    ]
    assert e.finished_at is not None


async def test_failed_rollback_ends_rollback_failed(tmp_path: Path, store: Store) -> None:
    """A rollback that fails ends the execution rollback_failed; the others are still tried."""
    log = tmp_path / "rollback.log"
    e = await run_one(
        config_with(tmp_path, ROLLBACK.replace("LOG", str(log)).replace("RC", "5")), store, target="x"
    )
    assert e.status is ExecutionStatus.ROLLBACK_FAILED
    assert log.read_text() == "unscale\nundrain\n"
    assert e.steps[1].rollback is not None and e.steps[1].rollback.exit_code == 5


async def test_no_rollback_without_compensations(tmp_path: Path, store: Store) -> None:
    """A failure with no succeeded step to undo ends plainly failed."""
    steps = """  - id: deploy
    action: script
    with: {command: ["false"]}
    rollback: {action: script, with: {command: ["true"]}}
"""
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    assert e.status is ExecutionStatus.FAILED and "rolling_back" not in [t.event for t in e.timeline]


async def test_shipped_demo_rolls_back_a_broken_target(store: Store) -> None:
    """The shipped demo playbook rolls back for target=broken."""
    config = load_config(PROJECT / "receiver.yml")
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
    await engine.ingest(parse_payload(payload(alert("ReceiverDemo", target="broken"))))
    claimed = await store.claim("w", 2)
    assert claimed is not None
    assert await engine.execute(claimed, "w") is ExecutionStatus.ROLLED_BACK
    done = await store.get(claimed.id)
    assert done is not None and done.steps[0].rollback is not None
    assert done.steps[0].rollback.stdout == "undo report for broken\n"


async def test_shipped_demo_asks_approval_fixes_and_waits_for_the_alert_to_clear(store: Store) -> None:
    """The shipped demo, as the README walks through it: it stops for approval with its message,
    runs the pretend fix once approved, and succeeds when the alert's resolution arrives."""
    config = load_config(PROJECT / "receiver.yml")
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
    firing = alert("ReceiverDemo", target="web-1")
    await engine.ingest(parse_payload(payload(firing)))
    claimed = await store.claim("w", 2)
    assert claimed is not None
    assert await engine.execute(claimed, "w") is ExecutionStatus.WAITING_APPROVAL
    parked = await store.get(claimed.id)
    assert parked is not None and parked.approval is not None
    assert parked.approval.message == "Pretend-restart web-1? The probe says it is unhealthy."
    await engine.decide(claimed.id, Verdict.APPROVED, by="me")
    resumed = await store.claim("w", 2)
    assert resumed is not None
    run = asyncio.create_task(engine.execute(resumed, "w"))
    await asyncio.sleep(0.3)
    await engine.ingest(parse_payload(payload({**firing, "status": "resolved"})))
    assert await asyncio.wait_for(run, 10) is ExecutionStatus.SUCCEEDED
    done = await store.get(claimed.id)
    assert done is not None
    assert {s.id: s.status.value for s in done.steps} == {
        "report": "succeeded",
        "probe": "succeeded",
        "verify": "succeeded",
        "approve": "succeeded",
        "fix": "succeeded",
        "cleared": "succeeded",
    }
    assert done.steps[4].stdout == "pretend restart of web-1\n"


async def test_wait_resolved_succeeds_when_the_resolution_arrives(tmp_path: Path, store: Store) -> None:
    """A wait_resolved step ends succeeded once the alert's resolved notification is ingested."""
    steps = """  - id: fix
    action: script
    with: {command: ["true"]}
  - id: cleared
    action: wait_resolved
    with: {timeout: 20s}
"""
    engine = Engine(config=config_with(tmp_path, steps), store=store, metrics=Metrics(), consumer="t")
    firing = alert("A", target="x")
    await engine.ingest(parse_payload(payload(firing)))
    claimed = await store.claim("w", 2)
    assert claimed is not None
    run = asyncio.create_task(engine.execute(claimed, "w"))
    await asyncio.sleep(0.5)
    assert not run.done()  # still waiting: the alert fires
    resolved = {**firing, "status": "resolved", "endsAt": "2099-01-01T00:00:00Z"}
    await engine.ingest(parse_payload(payload(resolved)))
    assert await asyncio.wait_for(run, 10) is ExecutionStatus.SUCCEEDED
    done = await store.get(claimed.id)
    assert done is not None and done.steps[1].stdout == "alert resolved\n" and done.recovered_after_s


async def test_wait_resolved_times_out_while_alert_fires(tmp_path: Path, store: Store) -> None:
    """A wait_resolved step fails at its timeout when the alert keeps firing."""
    steps = """  - id: cleared
    action: wait_resolved
    with: {timeout: 300ms}
"""
    e = await run_one(config_with(tmp_path, steps), store, target="x")
    assert e.status is ExecutionStatus.TIMED_OUT
    assert e.error == "step 'cleared' failed: alert still firing after 0.3s"


HOOKED = """name: p
steps:
  - id: s
    action: script
    with: {command: ["sh", "-c", "exit RC"]}
on_success:
  - {action: script, with: {command: ["sh", "-c", "echo success {{ execution.status }} >> LOG"]}}
on_failure:
  - {action: script, with: {command: ["sh", "-c", "echo failure {{ execution.status }} >> LOG; exit 1"]}}
always:
  - {action: script, with: {command: ["sh", "-c", "echo always >> LOG"]}}
"""


@pytest.mark.parametrize(
    ("rc", "status", "lines"),
    [
        ("0", ExecutionStatus.SUCCEEDED, ["success succeeded", "always"]),
        ("3", ExecutionStatus.FAILED, ["failure failed", "always"]),
    ],
)
async def test_hooks_run_by_outcome_and_never_change_it(
    tmp_path: Path, store: Store, rc: str, status: ExecutionStatus, lines: list[str]
) -> None:
    """on_success or on_failure runs by outcome, then always; a failing hook changes nothing."""
    log = tmp_path / "hooks.log"
    text = HOOKED.replace("RC", rc).replace("LOG", str(log))
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": text}))
    e = await run_one(config, store, target="x")
    assert e.status is status
    assert log.read_text().splitlines() == lines
    hook_events = [(t.event, t.step) for t in e.timeline if t.event.startswith("hook_")]
    expected_first = ("hook_succeeded", "on_success[0]") if rc == "0" else ("hook_failed", "on_failure[0]")
    assert hook_events == [expected_first, ("hook_succeeded", "always[0]")]


async def test_lock_is_rendered_at_admission_and_its_errors_reported(tmp_path: Path, store: Store) -> None:
    """The playbook's lock names each alert's target when admitted; an alert it cannot render for
    is rejected with the lock's place and the missing variable, and the others still go in."""
    text = """name: p
lock: "{{ alert.labels.namespace }}/{{ params.target }}"
lock_policy: skip
steps:
  - id: s
    action: script
    with: {command: ["true"]}
"""
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": text}))
    engine = Engine(config=config, store=store, metrics=Metrics(), consumer="t")
    report = await engine.ingest(
        parse_payload(payload(alert("A", target="web", namespace="prod"), alert("A", target="db")))
    )
    assert len(report.accepted) == 1 and len(report.rejected) == 1
    assert "playbook 'p' lock" in report.rejected[0]["error"]
    assert "namespace" in report.rejected[0]["error"]
    e = await store.get(report.accepted[0]["execution_id"])
    assert e is not None and (e.meta.lock, e.meta.lock_policy) == ("prod/web", "skip")


class SwallowingStore:
    """A real store whose heartbeat behaves as redis-py can: a cancellation that lands in the
    middle of the call is swallowed and the reply returned. Each heartbeat takes 2 s, so the end of
    a short run always lands in one."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def heartbeat(self, execution_id: str, consumer: str) -> Any:
        async def slow() -> Any:
            await asyncio.sleep(2)
            return await self._store.heartbeat(execution_id, consumer)

        call = asyncio.ensure_future(slow())
        while True:
            try:
                return await asyncio.shield(call)
            except asyncio.CancelledError:
                continue  # swallowed, as the client library does


async def test_run_ends_even_when_the_store_swallows_the_heartbeats_cancellation(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat stops when the run ends even if its cancellation is swallowed mid-call
    (seen with redis-py): the execution is recorded succeeded and its worker is free again."""
    monkeypatch.setattr("receiver.engine.HEARTBEAT_S", 0.01)
    steps = "  - id: s\n    action: script\n    with: {command: [sleep, '0.3']}\n"
    engine = Engine(
        config=config_with(tmp_path, steps), store=SwallowingStore(store), metrics=Metrics(), consumer="t"
    )  # type: ignore[arg-type]
    report = await engine.ingest(parse_payload(payload(alert("A", target="x"))))
    claimed = await store.claim("w", 2)
    assert claimed is not None and claimed.id == report.accepted[0]["execution_id"]
    async with asyncio.timeout(10):
        assert await engine.execute(claimed, "w") is ExecutionStatus.SUCCEEDED
    done = await store.get(claimed.id)
    assert done is not None and done.status is ExecutionStatus.SUCCEEDED
