"""One execution's run: steps started as the planner makes them ready, with conditions, retries
and timeouts, then rollbacks when it failed; every change checkpointed in the store. The engine
creates one Runner each time a worker takes an execution.

A Runner starts from the execution's stored step records, so the same code runs a new
execution, resumes one after its approval was decided, and takes over one whose worker died:
finished steps keep their outcome and are never run again; a step the dead worker was running
runs again only if it is marked `idempotent`, and otherwise fails as interrupted.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from receiver import outcome
from receiver.actions import ACTIONS, ActionContext, ActionResult
from receiver.actions.notify import NotifyParams
from receiver.approval import APPROVAL, ApprovalParams
from receiver.environment import alert_environment
from receiver.errors import StoreUnavailable, TemplateError
from receiver.execution import (
    Approval,
    Execution,
    RollbackRecord,
    StepRecord,
    TimelineEvent,
    Verdict,
)
from receiver.integrations import Integrations
from receiver.metrics import Metrics
from receiver.persist import until_stored
from receiver.planner import next_steps
from receiver.playbook import Playbook, Step
from receiver.redact import redact
from receiver.states import ExecutionStatus, StepStatus
from receiver.store.base import Store
from receiver.templates import TemplateTree, render_tree

INTERRUPTED = "interrupted: the worker running it stopped"
# Step outcomes that templates may read as steps.<id>.
FINISHED = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED})
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
        "outputs": rec.outputs,
    }


class Runner:
    """Runs the steps of one execution and keeps its step records."""

    def __init__(
        self,
        *,
        execution: Execution,
        playbook: Playbook,
        store: Store,
        metrics: Metrics,
        url: str,
        output_limit: int,
        clock: Callable[[], float],
        log: Any,
        integrations: Integrations | None = None,
    ) -> None:
        meta = execution.meta
        self.execution = execution
        self.meta = meta
        self.playbook = playbook
        self.integrations = integrations or Integrations()
        self.store = store
        self.metrics = metrics
        self.url = url
        self.output_limit = output_limit
        self.clock = clock
        self.log = log
        self.steps = {s.id: s for s in playbook.steps}
        stored = {r.id: r for r in execution.steps}
        self.records = {s.id: stored.get(s.id, StepRecord(id=s.id, action=s.action)) for s in playbook.steps}
        self.context: dict[str, Any] = {
            "alert": meta.alert.context(),
            "params": dict(meta.params),
            "rule": {"name": meta.rule},
            "playbook": {"name": playbook.name},
            "execution": {"id": meta.id, "url": url, "started_at": execution.started_at},
            "steps": {k: step_context(r) for k, r in self.records.items() if r.status in FINISHED},
        }
        self._lock = asyncio.Lock()
        self._noted: list[TimelineEvent] = []  # written by the next checkpoint
        # The alert's variables, computed once; each step's context sets RECEIVER_STEP.
        self._environment = alert_environment(meta, step_id="", execution_url=url)
        self._running: dict[asyncio.Task[ActionResult], str] = {}
        self.cancelled = False  # an operator cancelled the execution while it ran
        self.abandoned = False  # another worker took it over: write nothing more
        self.draining = False  # the process is stopping: start nothing new
        self.handed_back = False  # the run stopped early for another worker to resume
        self.approval: Approval | None = None  # set when the run stops to wait for one
        self._rejected: set[str] = set()  # approval steps that failed by a decision

    def cancel(self) -> None:
        """An operator cancelled the execution: start nothing more and stop the running steps."""
        self.cancelled = True
        self.log.info("execution.cancel_seen", running=sorted(self._running.values()))
        for task in self._running:
            task.cancel()  # the script action kills its process group

    def drain(self) -> None:
        """This process is stopping: start no new step; once the running ones finish, the run
        ends handed back (unless it had nothing left to do)."""
        self.draining = True

    def hand_back(self) -> None:
        """The stop's grace period is over: stop the running steps without recording them, so
        that the worker taking over treats them as interrupted."""
        self.handed_back = True
        self.abandon()

    def abandon(self) -> None:
        """Another worker owns the execution now: stop the steps and record nothing more."""
        self.abandoned = True
        self.log.warning("execution.abandoned", running=sorted(self._running.values()))
        for task in self._running:
            task.cancel()

    def note(self, event: TimelineEvent) -> None:
        """Keep a timeline event (its records already updated) for the next checkpoint to write."""
        self._noted.append(event)

    async def checkpoint(self, *events: TimelineEvent) -> None:
        """Write every step record with the events noted since the last write and these; without
        any, write nothing."""
        # Steps finish concurrently: take the snapshot inside the lock so an older one can never
        # be written after a newer one.
        async with self._lock:
            if self.abandoned:
                return
            pending = [*self._noted, *events]
            self._noted.clear()
            if not pending:
                return
            steps = [self.records[s.id] for s in self.playbook.steps]
            pending = [e.model_copy(update={"detail": redact(e.detail)}) if e.detail else e for e in pending]
            # Through a store outage the steps keep running; the record is written once it is back.
            await until_stored(
                lambda: self.store.save_steps(self.meta.id, steps, pending),
                what="checkpoint " + ", ".join(e.event for e in pending),
                log=self.log,
                give_up=lambda: self.abandoned,
            )

    def unwritten(self) -> tuple[list[StepRecord] | None, list[TimelineEvent]]:
        """The step records and the events noted since the last checkpoint, for the engine to
        write with the execution's status; (None, []) when there are none, or the run was
        taken over."""
        if self.abandoned or not self._noted:
            return None, []
        events = [e.model_copy(update={"detail": redact(e.detail)}) if e.detail else e for e in self._noted]
        self._noted.clear()
        return [self.records[s.id] for s in self.playbook.steps], events

    def _update(self, step_id: str, **fields: Any) -> StepRecord:
        rec = self.records[step_id].model_copy(update=fields)
        self.records[step_id] = rec
        return rec

    async def run(self) -> tuple[ExecutionStatus, str | None]:
        """Start steps as the planner makes them ready, up to max_parallel at once.

        Ends with the execution's outcome, or WAITING_APPROVAL (and `self.approval`) when nothing
        can go on until an approval is decided.
        """
        playbook = self.playbook
        loop = asyncio.get_running_loop()
        deadline = loop.time() + playbook.timeout_s - self.execution.run_time(self.clock())
        await self._settle_resumed()
        out_of_time = False
        running = self._running
        try:
            while True:
                decision = next_steps(playbook.plan, {k: r.status for k, r in self.records.items()})
                remaining = deadline - loop.time()
                cancel = list(decision.cancel)
                if remaining <= 0:
                    out_of_time = True
                if out_of_time or self.cancelled:
                    cancel = [
                        k
                        for k, r in self.records.items()
                        if r.status in (StepStatus.PENDING, StepStatus.WAITING_APPROVAL)
                    ]
                if cancel and not self.abandoned:
                    for k in cancel:
                        self._update(k, status=StepStatus.CANCELLED)
                    detail = "not started: " + ", ".join(cancel)
                    await self.checkpoint(
                        TimelineEvent(at=self.clock(), event="steps_cancelled", detail=detail)
                    )
                stop = out_of_time or self.cancelled or self.abandoned or self.draining
                ready = [] if stop else list(decision.ready)
                settled = False  # a step was skipped, failed or parked without running: plan again
                starting: list[Step] = []
                for sid in ready[: playbook.max_parallel - len(running)]:
                    step = self.steps[sid]
                    if step.when is not None and not self._condition(step):
                        settled = True
                        continue
                    if step.action == APPROVAL:
                        settled = await self._request_approval(step) or settled
                        continue
                    started = self.clock()
                    attempts = self.records[sid].attempts + 1
                    self._update(sid, status=StepStatus.RUNNING, started_at=started, attempts=attempts)
                    self.note(TimelineEvent(at=started, event="step_started", step=sid))
                    starting.append(step)
                # One write records the steps that just ended and those about to start, before
                # any starts: a worker taking over never runs a step that was recorded done, and
                # knows which it must treat as interrupted. When the run is over, the last steps'
                # ends are left for the engine to write with the execution's next status.
                if starting or settled or running:
                    await self.checkpoint()
                for step in [] if self.abandoned else starting:
                    self.log.info(
                        "step.started",
                        step=step.id,
                        action=step.action,
                        attempt=self.records[step.id].attempts,
                    )
                    running[asyncio.create_task(self._attempts(step, deadline))] = step.id
                if settled:
                    continue
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: playbook.plan.order.index(running[t])):
                    sid = running.pop(task)
                    if task.cancelled():
                        result = ActionResult(ok=False, error="cancelled by an operator")
                        self._record_step(self.steps[sid], result, StepStatus.CANCELLED)
                    else:
                        self._record_step(self.steps[sid], task.result())
        finally:
            for task in running:
                task.cancel()  # shutdown: the script action kills its process group
            await asyncio.gather(*running, return_exceptions=True)
            running.clear()
        if self.cancelled:
            return ExecutionStatus.CANCELLED, "cancelled by an operator"
        if self.draining and not self.abandoned:
            left = next_steps(playbook.plan, {k: r.status for k, r in self.records.items()})
            if left.ready:  # work remains: another worker goes on from here
                self.handed_back = True
                return ExecutionStatus.RUNNING, None
        return self._outcome(out_of_time)

    async def _settle_resumed(self) -> None:
        """Settle the steps a previous worker left unfinished, before planning.

        A step it was running is run again when idempotent, else fails as interrupted. A step
        waiting for approval takes the decision the execution came back with, if any.
        """
        now = self.clock()
        for sid, rec in list(self.records.items()):
            step = self.steps[sid]
            if rec.status is StepStatus.RUNNING:
                if step.idempotent:
                    self._update(sid, status=StepStatus.PENDING)
                    detail = "its worker stopped; running it again (idempotent)"
                    event = TimelineEvent(at=now, event="step_interrupted", step=sid, detail=detail)
                else:
                    rec = self._update(sid, status=StepStatus.FAILED, finished_at=now, error=INTERRUPTED)
                    self.context["steps"][sid] = step_context(rec)
                    event = TimelineEvent(at=now, event="step_failed", step=sid, detail=INTERRUPTED)
                self.log.warning("step.interrupted", step=sid, idempotent=step.idempotent)
                await self.checkpoint(event)
            elif rec.status is StepStatus.WAITING_APPROVAL:
                approval = self.execution.approval
                decision = approval.decision if approval is not None and approval.step == sid else None
                if decision is None:
                    continue
                ok = decision.verdict is Verdict.APPROVED
                rec = self._update(
                    sid,
                    status=StepStatus.SUCCEEDED if ok else StepStatus.FAILED,
                    finished_at=decision.at,
                    stdout=decision.describe() + "\n" if ok else "",
                    error=None if ok else decision.describe(),
                    timed_out=decision.verdict is Verdict.EXPIRED,
                )
                if not ok:
                    self._rejected.add(sid)
                self.context["steps"][sid] = step_context(rec)
                status = rec.status.value
                await self.checkpoint(
                    TimelineEvent(at=now, event=f"step_{status}", step=sid, detail=decision.describe())
                )
                self.log.info("approval.decided", step=sid, verdict=decision.verdict.value, by=decision.by)

    async def _request_approval(self, step: Step) -> bool:
        """Put an approval step in waiting_approval, unless another approval already waits.

        Returns True when the step settled at once (its parameters failed to render).
        """
        if any(r.status is StepStatus.WAITING_APPROVAL for r in self.records.values()):
            return False  # one approval at a time: this one asks once the other is decided
        now = self.clock()
        try:
            params = ApprovalParams.model_validate(render_tree(step.with_, self.context))
        except (TemplateError, ValidationError) as e:
            rec = self._update(step.id, status=StepStatus.FAILED, finished_at=now, attempts=1, error=str(e))
            self.context["steps"][step.id] = step_context(rec)
            await self.checkpoint(TimelineEvent(at=now, event="step_failed", step=step.id, detail=str(e)))
            return True
        self._update(
            step.id,
            status=StepStatus.WAITING_APPROVAL,
            started_at=now,
            attempts=1,
            stdout=params.message,
        )
        self.approval = Approval(
            step=step.id, message=params.message, requested_at=now, deadline=now + params.timeout
        )
        await self.checkpoint(
            TimelineEvent(at=now, event="approval_requested", step=step.id, detail=params.message or None)
        )
        self.log.info(
            "approval.requested", step=step.id, message=params.message, timeout_s=params.timeout, url=self.url
        )
        if params.notify:
            await self._announce_approval(step.id, params)
        return False

    async def _announce_approval(self, step_id: str, params: ApprovalParams) -> None:
        """Tell the approval's notifiers what is asked and how to answer; a failure is recorded
        and changes nothing."""
        alertname = self.meta.alert.name
        title = f"Approval needed: {alertname} · {self.playbook.name}"
        body = (
            f"{params.message or 'Step ' + step_id + ' waits for approval.'}\n"
            f"Approve: POST {self.url}/approve\nReject:  POST {self.url}/reject\n"
            f"Without a decision within {params.timeout:g}s it is rejected.\n{self.url}"
        )
        notify = NotifyParams(to=params.notify, title=title, body=body, type="warning")
        result = await ACTIONS["notify"].run(notify, self.action_context(step_id), timeout_s=30.0)
        event = "approval_notified" if result.ok else "approval_notify_failed"
        await self.checkpoint(TimelineEvent(at=self.clock(), event=event, step=step_id, detail=result.error))

    def _condition(self, step: Step) -> bool:
        """Evaluate `when`; note the step skipped (false) or failed (the expression failed)."""
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
        self.note(event)
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
            self._update(step.id, attempts=self.records[step.id].attempts + 1)

    def _record_step(self, step: Step, result: ActionResult, status: StepStatus | None = None) -> None:
        finished = self.clock()
        if status is None:
            status = StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED
        rec = self._update(
            step.id, status=status, finished_at=finished, timed_out=result.timed_out, **result.recorded()
        )
        self.context["steps"][step.id] = step_context(rec)
        # Written with the next checkpoint, at the top of the run's loop, with the steps it starts.
        self.note(TimelineEvent(at=finished, event=f"step_{status.value}", step=step.id, detail=result.error))
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
            if first.id in self._rejected:
                return ExecutionStatus.REJECTED, f"approval {first.id!r} {first.error}"
            kind = ExecutionStatus.TIMED_OUT if first.timed_out else ExecutionStatus.FAILED
            return kind, f"step {first.id!r} failed: {first.error}"
        if out_of_time:
            return ExecutionStatus.TIMED_OUT, f"playbook timeout of {self.playbook.timeout_s:g}s reached"
        waiting = [r for r in self.records.values() if r.status is StepStatus.WAITING_APPROVAL]
        if waiting:
            if self.approval is None:  # asked by a worker that stopped before the execution parked
                rec = waiting[0]
                params = ApprovalParams.model_validate(render_tree(self.steps[rec.id].with_, self.context))
                asked = rec.started_at or self.clock()
                self.approval = Approval(
                    step=rec.id, message=rec.stdout, requested_at=asked, deadline=asked + params.timeout
                )
            return ExecutionStatus.WAITING_APPROVAL, None
        return ExecutionStatus.SUCCEEDED, None

    async def _alert_resolved(self) -> bool:
        execution = await self.store.get(self.meta.id)
        return execution is not None and execution.resolved_at is not None

    def to_roll_back(self) -> list[StepRecord]:
        """Succeeded steps that have a rollback not yet run, latest to finish first."""
        done = [
            r
            for r in self.records.values()
            if r.status is StepStatus.SUCCEEDED
            and self.steps[r.id].rollback is not None
            and (r.rollback is None or r.rollback.status is StepStatus.RUNNING)
        ]
        return sorted(done, key=lambda r: r.finished_at or 0.0, reverse=True)

    async def rollback(self) -> ExecutionStatus:
        """Run the rollbacks of the succeeded steps in reverse order of completion.

        Every rollback is tried even when one fails; the result says whether all succeeded. When
        resuming, rollbacks already finished are kept, and one the previous worker was running
        runs again only if its step is idempotent.
        """
        for rec in self.to_roll_back():
            comp = self.steps[rec.id].rollback
            assert comp is not None
            if self.abandoned:
                break
            if rec.rollback is not None and not self.steps[rec.id].idempotent:
                now = self.clock()
                self._update(
                    rec.id,
                    rollback=rec.rollback.model_copy(
                        update={"status": StepStatus.FAILED, "finished_at": now, "error": INTERRUPTED}
                    ),
                )
                await self.checkpoint(
                    TimelineEvent(at=now, event="rollback_failed", step=rec.id, detail=INTERRUPTED)
                )
                continue
            started = self.clock()
            self._update(rec.id, rollback=RollbackRecord(action=comp.action, started_at=started))
            await self.checkpoint(TimelineEvent(at=started, event="rollback_started", step=rec.id))
            self.log.info("rollback.started", step=rec.id, action=comp.action)
            result = await self.run_action(f"{rec.id}.rollback", comp.action, comp.with_, comp.timeout_s)
            finished = self.clock()
            status = StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED
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
        all_ok = all(
            r.rollback is None or r.rollback.status is StepStatus.SUCCEEDED for r in self.records.values()
        )
        return ExecutionStatus.ROLLED_BACK if all_ok else ExecutionStatus.ROLLBACK_FAILED

    async def hooks(self, status: ExecutionStatus, error: str | None) -> None:
        """Run the playbook's hooks for this outcome: on_success or on_failure, then always.

        A hook sees `execution.status` and `execution.error`; its failure is recorded in the
        timeline and the log and never changes the outcome.
        """
        kinds = []
        if self.abandoned:
            return
        if status is ExecutionStatus.SUCCEEDED:
            kinds.append("on_success")
        elif status is not ExecutionStatus.CANCELLED:
            kinds.append("on_failure")
        kinds.append("always")
        if not any(self.playbook.hooks.get(k) for k in kinds) and not self.integrations.reports_outcome:
            return  # nothing would read it: spare the store a read of the whole record
        await self.checkpoint()  # what ran is on record before hooks and reports, which may be slow
        try:
            recovered = await self._alert_resolved()
        except StoreUnavailable:
            recovered = False
        self.context["execution"] = {
            **self.context["execution"],
            "status": status.value,
            "error": error,
            "recovered": recovered,
        }
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

    def action_context(self, step_id: str) -> ActionContext:
        """What an action running for this execution may know."""
        return ActionContext(
            execution_id=self.meta.id,
            step_id=step_id,
            env={**self._environment, "RECEIVER_STEP": step_id},
            output_limit=self.output_limit,
            alert_resolved=self._alert_resolved,
            integrations=self.integrations,
            template_context=self.context,
        )

    async def finish(self) -> None:
        """After the hooks: expire the silences steps created, and report the outcome as the
        config's `outcome:` says. Failures are logged and recorded, never change the outcome."""
        if self.abandoned:
            return
        records = list(self.records.values())
        if any(r.outputs.get("silence_id") for r in records):
            await self.checkpoint()  # what ran is on record before calls to Alertmanager
        await outcome.expire_silences(records, self.integrations, self.checkpoint, self.clock, self.log)
        ctx = self.action_context("outcome")
        await outcome.report(ctx, self.integrations, self.metrics, self.checkpoint, self.clock, self.log)

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
        ctx = self.action_context(step_id)
        try:
            async with asyncio.timeout(timeout_s + ACTION_GRACE_S):  # unlike wait_for, no extra task
                return await action.run(params, ctx, timeout_s=timeout_s)
        except TimeoutError:
            return ActionResult(ok=False, error=f"timed out after {timeout_s:g}s", timed_out=True)
