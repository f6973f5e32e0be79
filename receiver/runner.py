"""One execution's run: steps started as the planner makes them ready, with conditions, retries
and timeouts, then rollbacks when it failed; every change checkpointed in the store. The engine
creates one Runner per run.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from receiver.actions import ACTIONS, ActionContext, ActionResult
from receiver.environment import alert_environment
from receiver.errors import StoreUnavailable, TemplateError
from receiver.execution import ExecutionMeta, RollbackRecord, StepRecord, TimelineEvent
from receiver.metrics import Metrics
from receiver.planner import next_steps
from receiver.playbook import Playbook, Step
from receiver.states import ExecutionStatus, StepStatus
from receiver.store.base import Store
from receiver.templates import TemplateTree, render_tree

# How often a running execution's status is read, so that an operator's cancel (made through any
# replica) stops it within about this long.
CANCEL_POLL_S = 1.0
# Slack on top of a step's timeout before the runner itself abandons an action that ignores it.
ACTION_GRACE_S = 5.0


def step_context(rec: StepRecord) -> dict[str, Any]:
    """What templates see of a finished step as `steps.<id>`."""
    parsed: Any = None
    if rec.stdout.strip():
        try:
            parsed = json.loads(rec.stdout)
        except ValueError:
            parsed = None
    return {
        "status": rec.status.value,
        "exit_code": rec.exit_code,
        "stdout": rec.stdout,
        "stderr": rec.stderr,
        "json": parsed,
        "attempts": rec.attempts,
        "error": rec.error,
    }


class Runner:
    """Runs the steps of one execution and keeps its step records."""

    def __init__(
        self,
        *,
        meta: ExecutionMeta,
        playbook: Playbook,
        store: Store,
        metrics: Metrics,
        url: str,
        output_limit: int,
        clock: Callable[[], float],
        log: Any,
    ) -> None:
        self.meta = meta
        self.playbook = playbook
        self.store = store
        self.metrics = metrics
        self.url = url
        self.output_limit = output_limit
        self.clock = clock
        self.log = log
        self.steps = {s.id: s for s in playbook.steps}
        self.records = {s.id: StepRecord(id=s.id, action=s.action) for s in playbook.steps}
        self.context: dict[str, Any] = {
            "alert": meta.alert.context(),
            "params": dict(meta.params),
            "rule": {"name": meta.rule},
            "execution": {"id": meta.id, "url": url},
            "steps": {},
        }
        self._lock = asyncio.Lock()
        self.cancelled = False  # an operator cancelled the execution while it ran

    async def checkpoint(self, event: TimelineEvent) -> None:
        """Write every step record with a timeline event."""
        # Steps finish concurrently: take the snapshot inside the lock so an older one can never
        # be written after a newer one.
        async with self._lock:
            await self.store.save_steps(
                self.meta.id, [self.records[s.id] for s in self.playbook.steps], event
            )

    def _update(self, step_id: str, **fields: Any) -> StepRecord:
        rec = self.records[step_id].model_copy(update=fields)
        self.records[step_id] = rec
        return rec

    async def run(self) -> tuple[ExecutionStatus, str | None]:
        """Start steps as the planner makes them ready, up to max_parallel at once."""
        playbook = self.playbook
        loop = asyncio.get_running_loop()
        deadline = loop.time() + playbook.timeout_s
        out_of_time = False
        running: dict[asyncio.Task[ActionResult], str] = {}
        watch = asyncio.create_task(self._watch_cancel(running))
        try:
            while True:
                decision = next_steps(playbook.plan, {k: r.status for k, r in self.records.items()})
                remaining = deadline - loop.time()
                cancel = list(decision.cancel)
                if remaining <= 0:
                    out_of_time = True
                if out_of_time or self.cancelled:
                    cancel = [k for k, r in self.records.items() if r.status is StepStatus.PENDING]
                if cancel:
                    for k in cancel:
                        self._update(k, status=StepStatus.CANCELLED)
                    detail = "not started: " + ", ".join(cancel)
                    await self.checkpoint(
                        TimelineEvent(at=self.clock(), event="steps_cancelled", detail=detail)
                    )
                ready = [] if out_of_time or self.cancelled else list(decision.ready)
                settled = False  # a step was skipped or failed without running: plan again
                for sid in ready[: playbook.max_parallel - len(running)]:
                    step = self.steps[sid]
                    if step.when is not None and not await self._condition(step):
                        settled = True
                        continue
                    started = self.clock()
                    self._update(sid, status=StepStatus.RUNNING, started_at=started, attempts=1)
                    await self.checkpoint(TimelineEvent(at=started, event="step_started", step=sid))
                    self.log.info("step.started", step=sid, action=step.action, attempt=1)
                    running[asyncio.create_task(self._attempts(step, deadline))] = sid
                if settled:
                    continue
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: playbook.plan.order.index(running[t])):
                    sid = running.pop(task)
                    if task.cancelled():
                        result = ActionResult(ok=False, error="cancelled by an operator")
                        await self._record_step(self.steps[sid], result, StepStatus.CANCELLED)
                    else:
                        await self._record_step(self.steps[sid], task.result())
        finally:
            watch.cancel()
            for task in running:
                task.cancel()  # shutdown: the script action kills its process group
            await asyncio.gather(watch, *running, return_exceptions=True)
        if self.cancelled:
            return ExecutionStatus.CANCELLED, "cancelled by an operator"
        return self._outcome(out_of_time)

    async def _watch_cancel(self, running: dict[asyncio.Task[ActionResult], str]) -> None:
        """Stop the running steps once the execution's status turns cancelled in the store."""
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            try:
                status = await self.store.status(self.meta.id)
            except StoreUnavailable:
                continue
            if status is ExecutionStatus.CANCELLED:
                self.cancelled = True
                self.log.info("execution.cancel_seen", running=sorted(running.values()))
                for task in running:
                    task.cancel()  # the script action kills its process group
                return

    async def _condition(self, step: Step) -> bool:
        """Evaluate `when`; record the step skipped (false) or failed (the expression failed)."""
        assert step.when is not None
        now = self.clock()
        try:
            run = bool(step.when.evaluate(self.context))
        except TemplateError as e:
            rec = self._update(step.id, status=StepStatus.FAILED, finished_at=now, error=str(e))
            event = TimelineEvent(at=now, event="step_failed", step=step.id, detail=str(e))
        else:
            if run:
                return True
            rec = self._update(step.id, status=StepStatus.SKIPPED, finished_at=now)
            event = TimelineEvent(
                at=now, event="step_skipped", step=step.id, detail=f"when: {step.when.source}"
            )
        self.context["steps"][step.id] = step_context(rec)
        await self.checkpoint(event)
        return False

    async def _attempts(self, step: Step, deadline: float) -> ActionResult:
        """Run a step's action up to retry.attempts times, backing off between attempts."""
        loop = asyncio.get_running_loop()
        attempt = 1
        while True:
            remaining = deadline - loop.time()
            timeout_s = min(step.timeout_s, remaining) if step.timeout_s is not None else remaining
            result = await self.run_action(step.id, step.action, step.with_, timeout_s)
            if result.ok or attempt >= step.retry.attempts:
                return result
            delay = step.retry.delay(attempt, random.random())
            if loop.time() + delay >= deadline:
                return result  # no time left for another attempt
            detail = f"attempt {attempt} failed: {result.error}; next in {delay:.2f}s"
            await self.checkpoint(
                TimelineEvent(at=self.clock(), event="step_retrying", step=step.id, detail=detail)
            )
            self.log.info(
                "step.retrying", step=step.id, attempt=attempt, error=result.error, delay_s=round(delay, 3)
            )
            await asyncio.sleep(delay)
            attempt += 1
            self._update(step.id, attempts=attempt)

    async def _record_step(self, step: Step, result: ActionResult, status: StepStatus | None = None) -> None:
        finished = self.clock()
        if status is None:
            status = StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED
        rec = self._update(
            step.id, status=status, finished_at=finished, timed_out=result.timed_out, **result.recorded()
        )
        self.context["steps"][step.id] = step_context(rec)
        await self.checkpoint(
            TimelineEvent(at=finished, event=f"step_{status.value}", step=step.id, detail=result.error)
        )
        self.metrics.step_duration.labels(step.action, status.value).observe(
            finished - (rec.started_at or finished)
        )
        self.log.info(
            "step.finished",
            step=step.id,
            attempt=rec.attempts,
            outcome=status.value,
            exit_code=result.exit_code,
        )

    def _outcome(self, out_of_time: bool) -> tuple[ExecutionStatus, str | None]:
        """The execution's end: the first step to fail decides it; else the playbook's clock."""
        tolerant = self.playbook.plan.tolerant
        failed = sorted(
            (r for r in self.records.values() if r.status is StepStatus.FAILED and r.id not in tolerant),
            key=lambda r: r.finished_at or 0.0,
        )
        if failed:
            first = failed[0]
            kind = ExecutionStatus.TIMED_OUT if first.timed_out else ExecutionStatus.FAILED
            return kind, f"step {first.id!r} failed: {first.error}"
        if out_of_time:
            return ExecutionStatus.TIMED_OUT, f"playbook timeout of {self.playbook.timeout_s:g}s reached"
        return ExecutionStatus.SUCCEEDED, None

    async def _alert_resolved(self) -> bool:
        execution = await self.store.get(self.meta.id)
        return execution is not None and execution.resolved_at is not None

    def to_roll_back(self) -> list[StepRecord]:
        """Succeeded steps that have a rollback, latest to finish first."""
        done = [
            r
            for r in self.records.values()
            if r.status is StepStatus.SUCCEEDED and self.steps[r.id].rollback is not None
        ]
        return sorted(done, key=lambda r: r.finished_at or 0.0, reverse=True)

    async def rollback(self) -> ExecutionStatus:
        """Run the rollbacks of the succeeded steps in reverse order of completion.

        Every rollback is tried even when one fails; the result says whether all succeeded.
        """
        all_ok = True
        for rec in self.to_roll_back():
            comp = self.steps[rec.id].rollback
            assert comp is not None
            started = self.clock()
            self._update(rec.id, rollback=RollbackRecord(action=comp.action, started_at=started))
            await self.checkpoint(TimelineEvent(at=started, event="rollback_started", step=rec.id))
            self.log.info("rollback.started", step=rec.id, action=comp.action)
            result = await self.run_action(f"{rec.id}.rollback", comp.action, comp.with_, comp.timeout_s)
            finished = self.clock()
            status = StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED
            all_ok = all_ok and result.ok
            self._update(
                rec.id,
                rollback=RollbackRecord(
                    action=comp.action,
                    status=status,
                    started_at=started,
                    finished_at=finished,
                    **result.recorded(),
                ),
            )
            await self.checkpoint(
                TimelineEvent(at=finished, event=f"rollback_{status.value}", step=rec.id, detail=result.error)
            )
            self.log.info("rollback.finished", step=rec.id, outcome=status.value, exit_code=result.exit_code)
        return ExecutionStatus.ROLLED_BACK if all_ok else ExecutionStatus.ROLLBACK_FAILED

    async def hooks(self, status: ExecutionStatus, error: str | None) -> None:
        """Run the playbook's hooks for this outcome: on_success or on_failure, then always.

        A hook sees `execution.status` and `execution.error`; its failure is recorded in the
        timeline and the log and never changes the outcome.
        """
        kinds = []
        if status is ExecutionStatus.SUCCEEDED:
            kinds.append("on_success")
        elif status is not ExecutionStatus.CANCELLED:
            kinds.append("on_failure")
        kinds.append("always")
        self.context["execution"] = {**self.context["execution"], "status": status.value, "error": error}
        for kind in kinds:
            for i, hook in enumerate(self.playbook.hooks.get(kind, ())):
                name = f"{kind}[{i}]"
                result = await self.run_action(name, hook.action, hook.with_, hook.timeout_s)
                outcome = "succeeded" if result.ok else "failed"
                detail = result.error if not result.ok else (result.stdout[-500:] or None)
                await self.checkpoint(
                    TimelineEvent(at=self.clock(), event=f"hook_{outcome}", step=name, detail=detail)
                )
                self.log.info(
                    "hook.finished", hook=name, action=hook.action, outcome=outcome, error=result.error
                )

    async def run_action(
        self, step_id: str, action_name: str, with_: TemplateTree, timeout_s: float
    ) -> ActionResult:
        """Render `with:` against the context, validate it, and run the action within timeout_s."""
        action = ACTIONS[action_name]
        try:
            params = action.Params.model_validate(render_tree(with_, self.context))
        except TemplateError as e:
            return ActionResult(ok=False, error=str(e))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            return ActionResult(ok=False, error=f"with.{loc}: {err['msg']} (after rendering)")
        ctx = ActionContext(
            execution_id=self.meta.id,
            step_id=step_id,
            env=alert_environment(self.meta, step_id=step_id, execution_url=self.url),
            output_limit=self.output_limit,
            alert_resolved=self._alert_resolved,
        )
        try:
            return await asyncio.wait_for(
                action.run(params, ctx, timeout_s=timeout_s), timeout_s + ACTION_GRACE_S
            )
        except TimeoutError:
            return ActionResult(ok=False, error=f"timed out after {timeout_s:g}s", timed_out=True)
