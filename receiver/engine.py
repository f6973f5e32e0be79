"""The orchestrator: the one place where the pure core meets the store and the actions.

`ingest` turns a payload into one atomic admission; worker tasks claim queued executions and run
their playbook's steps as the planner makes them ready, checkpointing every transition.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from receiver.actions import ACTIONS, ActionContext, ActionResult
from receiver.config import Config
from receiver.dedup import Outcome, plan_admission
from receiver.environment import alert_environment
from receiver.errors import StoreUnavailable, TemplateError
from receiver.execution import Execution, ExecutionMeta, StepRecord, TimelineEvent, new_execution_id
from receiver.logs import get_logger
from receiver.metrics import Metrics
from receiver.models import WebhookPayload
from receiver.planner import next_steps
from receiver.playbook import Playbook, Step
from receiver.states import ExecutionStatus, StepStatus
from receiver.store.base import Store
from receiver.templates import render_tree

# How long a worker waits on the queue before looking again (also bounds how long shutdown waits).
CLAIM_WAIT_S = 1.0
# Pause after the store failed, so an outage does not turn into a busy loop of errors.
STORE_RETRY_S = 1.0
# Slack on top of a step's timeout before the engine itself abandons an action that ignores it.
ACTION_GRACE_S = 5.0


@dataclass
class IngestReport:
    """What happened to every alert of a payload; rendered as the webhook's response."""

    accepted: list[dict[str, str]] = field(default_factory=list)
    suppressed: list[dict[str, str]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    unrouted: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The response body."""
        return {
            "accepted": self.accepted,
            "suppressed": self.suppressed,
            "resolved": self.resolved,
            "unrouted": self.unrouted,
            "rejected": self.rejected,
        }


def _step_context(rec: StepRecord) -> dict[str, Any]:
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


class Engine:
    """Admits payloads and runs executions with a pool of worker tasks."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        metrics: Metrics,
        consumer: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.consumer = consumer
        self._clock = clock
        self._log = get_logger(consumer=consumer)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # ---- ingest -------------------------------------------------------------------------

    def execution_url(self, execution_id: str) -> str:
        """Where the history API shows an execution."""
        return f"{self.config.settings.external_url.rstrip('/')}/api/v1/executions/{execution_id}"

    async def ingest(self, payload: WebhookPayload) -> IngestReport:
        """Route every alert and admit the payload in one store call; StoreUnavailable propagates."""
        m = self.metrics
        now = self._clock()
        for a in payload.alerts:
            m.alerts_received.labels(a.status).inc()
        report = IngestReport()
        for r in payload.rejected:
            m.alerts_rejected.inc()
            report.rejected.append({"index": r.index, "error": r.error})
        plan = plan_admission(payload, self.config.rules, now=now, new_id=new_execution_id)
        for a in plan.unrouted:
            m.alerts_suppressed.labels("no_rule").inc()
            report.unrouted.append({"fingerprint": a.fingerprint, "alertname": a.name})
        for p in plan.problems:
            m.alerts_suppressed.labels("template_error").inc()
            report.rejected.append({"fingerprint": p.alert.fingerprint, "rule": p.rule, "error": p.error})
            self._log.warning("route.failed", fingerprint=p.alert.fingerprint, rule=p.rule, error=p.error)
        if not plan.alerts:
            return report
        try:
            result = await self.store.admit(plan, now)
        except StoreUnavailable:
            m.store_errors.labels("admit").inc()
            raise
        metas = {c.meta.id: c.meta for a in plan.alerts for c in a.candidates}
        for d in result.decided:
            meta = metas[d.execution_id]
            row = {
                "rule": meta.rule,
                "playbook": meta.playbook,
                "fingerprint": meta.alert.fingerprint,
                "alertname": meta.alert.name,
            }
            if d.outcome is Outcome.ADMITTED:
                m.alerts_admitted.labels(meta.rule).inc()
                report.accepted.append({"execution_id": meta.id, "url": self.execution_url(meta.id), **row})
                self._log.info("execution.queued", execution=meta.id, **row)
            else:
                m.alerts_suppressed.labels(d.outcome.value).inc()
                report.suppressed.append({**row, "reason": d.outcome.value})
        for u in result.resolved:
            report.resolved.append({"execution_id": u.execution_id, "cancelled": u.cancelled})
            self._log.info("execution.alert_resolved", execution=u.execution_id, cancelled=u.cancelled)
        return report

    # ---- workers ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the configured number of worker tasks."""
        for n in range(self.config.settings.workers):
            self._tasks.append(asyncio.create_task(self._worker(n), name=f"worker-{n}"))

    async def stop(self) -> None:
        """Cancel the workers and wait for them (a running script's process group is killed)."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _worker(self, n: int) -> None:
        consumer = f"{self.consumer}-{n}"
        task = asyncio.current_task()
        while not self._stopping:
            try:
                execution = await self.store.claim(consumer, CLAIM_WAIT_S)
                if execution is not None:
                    await self.execute(execution)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # A client library may turn a cancellation into its own error; never swallow it.
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from e
                if isinstance(e, StoreUnavailable):
                    self.metrics.store_errors.labels("worker").inc()
                    self._log.warning("worker.store_unavailable", worker=consumer, error=str(e))
                else:
                    self._log.exception("worker.error", worker=consumer)
                await asyncio.sleep(STORE_RETRY_S)

    # ---- running one execution ------------------------------------------------------------

    async def execute(self, execution: Execution) -> ExecutionStatus:
        """Run a claimed (running) execution to a terminal state and record it."""
        meta = execution.meta
        log = self._log.bind(
            execution=meta.id,
            fingerprint=meta.alert.fingerprint,
            rule=meta.rule,
            playbook=meta.playbook,
        )
        log.info("execution.started")
        self.metrics.executions_running.inc()
        status: ExecutionStatus
        error: str | None
        try:
            playbook = self.config.playbooks.get(meta.playbook)
            if playbook is None:
                status, error = ExecutionStatus.FAILED, f"playbook {meta.playbook!r} is not loaded"
            else:
                status, error = await self._run_steps(execution, playbook, log)
            await self.store.transition(meta.id, status, now=self._clock(), error=error)
        finally:
            self.metrics.executions_running.dec()
        self.metrics.executions.labels(meta.playbook, status.value).inc()
        log.info("execution.finished", outcome=status.value, error=error)
        return status

    async def _run_steps(
        self, execution: Execution, playbook: Playbook, log: Any
    ) -> tuple[ExecutionStatus, str | None]:
        """Start steps as the planner makes them ready, up to max_parallel at once."""
        meta = execution.meta
        url = self.execution_url(meta.id)
        steps = {s.id: s for s in playbook.steps}
        records = {s.id: StepRecord(id=s.id, action=s.action) for s in playbook.steps}
        context: dict[str, Any] = {
            "alert": meta.alert.context(),
            "params": dict(meta.params),
            "rule": {"name": meta.rule},
            "execution": {"id": meta.id, "url": url},
            "steps": {},
        }

        lock = asyncio.Lock()

        async def checkpoint(event: TimelineEvent) -> None:
            # Steps finish concurrently: take the snapshot inside the lock so an older one can
            # never be written after a newer one.
            async with lock:
                await self.store.save_steps(meta.id, [records[s.id] for s in playbook.steps], event)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + playbook.timeout_s
        out_of_time = False
        running: dict[asyncio.Task[ActionResult], str] = {}
        try:
            while True:
                decision = next_steps(playbook.plan, {k: r.status for k, r in records.items()})
                remaining = deadline - loop.time()
                cancel = list(decision.cancel)
                if remaining <= 0:
                    out_of_time = True
                    cancel = [k for k, r in records.items() if r.status is StepStatus.PENDING]
                if cancel:
                    for k in cancel:
                        records[k] = records[k].model_copy(update={"status": StepStatus.CANCELLED})
                    detail = "not started: " + ", ".join(cancel)
                    await checkpoint(TimelineEvent(at=self._clock(), event="steps_cancelled", detail=detail))
                ready = [] if out_of_time else list(decision.ready)
                settled = False  # a step was skipped or failed without running: plan again
                for sid in ready[: playbook.max_parallel - len(running)]:
                    step = steps[sid]
                    if step.when is not None and not await self._condition(
                        step, records, context, checkpoint
                    ):
                        settled = True
                        continue
                    started = self._clock()
                    records[sid] = records[sid].model_copy(
                        update={"status": StepStatus.RUNNING, "started_at": started, "attempts": 1}
                    )
                    await checkpoint(TimelineEvent(at=started, event="step_started", step=sid))
                    log.info("step.started", step=sid, action=step.action, attempt=1)
                    attempts = self._attempts(step, context, meta, url, deadline, records, checkpoint, log)
                    running[asyncio.create_task(attempts)] = sid
                if settled:
                    continue
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: playbook.plan.order.index(running[t])):
                    sid = running.pop(task)
                    await self._record_step(steps[sid], task.result(), records, context, checkpoint, log)
        finally:
            for task in running:
                task.cancel()  # shutdown: the script action kills its process group
            await asyncio.gather(*running, return_exceptions=True)
        return self._outcome([records[s.id] for s in playbook.steps], out_of_time, playbook)

    async def _condition(
        self,
        step: Step,
        records: dict[str, StepRecord],
        context: dict[str, Any],
        checkpoint: Callable[[TimelineEvent], Awaitable[None]],
    ) -> bool:
        """Evaluate `when`; record the step skipped (false) or failed (the expression failed)."""
        assert step.when is not None
        now = self._clock()
        try:
            run = bool(step.when.evaluate(context))
        except TemplateError as e:
            update: dict[str, Any] = {"status": StepStatus.FAILED, "finished_at": now, "error": str(e)}
            event = TimelineEvent(at=now, event="step_failed", step=step.id, detail=str(e))
        else:
            if run:
                return True
            update = {"status": StepStatus.SKIPPED, "finished_at": now}
            event = TimelineEvent(
                at=now, event="step_skipped", step=step.id, detail=f"when: {step.when.source}"
            )
        records[step.id] = records[step.id].model_copy(update=update)
        context["steps"][step.id] = _step_context(records[step.id])
        await checkpoint(event)
        return False

    async def _attempts(
        self,
        step: Step,
        context: dict[str, Any],
        meta: ExecutionMeta,
        url: str,
        deadline: float,
        records: dict[str, StepRecord],
        checkpoint: Callable[[TimelineEvent], Awaitable[None]],
        log: Any,
    ) -> ActionResult:
        """Run a step's action up to retry.attempts times, backing off between attempts."""
        loop = asyncio.get_running_loop()
        attempt = 1
        while True:
            remaining = deadline - loop.time()
            timeout_s = min(step.timeout_s, remaining) if step.timeout_s is not None else remaining
            result = await self._run_action(step, context, meta, url, timeout_s)
            if result.ok or attempt >= step.retry.attempts:
                return result
            delay = step.retry.delay(attempt, random.random())
            if loop.time() + delay >= deadline:
                return result  # no time left for another attempt
            detail = f"attempt {attempt} failed: {result.error}; next in {delay:.2f}s"
            await checkpoint(
                TimelineEvent(at=self._clock(), event="step_retrying", step=step.id, detail=detail)
            )
            log.info(
                "step.retrying", step=step.id, attempt=attempt, error=result.error, delay_s=round(delay, 3)
            )
            await asyncio.sleep(delay)
            attempt += 1
            records[step.id] = records[step.id].model_copy(update={"attempts": attempt})

    async def _record_step(
        self,
        step: Step,
        result: ActionResult,
        records: dict[str, StepRecord],
        context: dict[str, Any],
        checkpoint: Callable[[TimelineEvent], Awaitable[None]],
        log: Any,
    ) -> None:
        finished = self._clock()
        status = StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED
        rec = records[step.id].model_copy(
            update={
                "status": status,
                "finished_at": finished,
                "exit_code": result.exit_code,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "error": result.error,
                "timed_out": result.timed_out,
            }
        )
        records[step.id] = rec
        context["steps"][step.id] = _step_context(rec)
        await checkpoint(
            TimelineEvent(at=finished, event=f"step_{status.value}", step=step.id, detail=result.error)
        )
        self.metrics.step_duration.labels(step.action, status.value).observe(
            finished - (rec.started_at or finished)
        )
        log.info(
            "step.finished",
            step=step.id,
            attempt=rec.attempts,
            outcome=status.value,
            exit_code=result.exit_code,
        )

    @staticmethod
    def _outcome(
        records: list[StepRecord], out_of_time: bool, playbook: Playbook
    ) -> tuple[ExecutionStatus, str | None]:
        """The execution's end: the first step to fail decides it; else the playbook's clock."""
        failed = sorted(
            (r for r in records if r.status is StepStatus.FAILED and r.id not in playbook.plan.tolerant),
            key=lambda r: r.finished_at or 0.0,
        )
        if failed:
            first = failed[0]
            kind = ExecutionStatus.TIMED_OUT if first.timed_out else ExecutionStatus.FAILED
            return kind, f"step {first.id!r} failed: {first.error}"
        if out_of_time:
            return ExecutionStatus.TIMED_OUT, f"playbook timeout of {playbook.timeout_s:g}s reached"
        return ExecutionStatus.SUCCEEDED, None

    async def _run_action(
        self, step: Step, context: dict[str, Any], meta: ExecutionMeta, url: str, timeout_s: float
    ) -> ActionResult:
        action = ACTIONS[step.action]
        try:
            rendered = render_tree(step.with_, context)
            params = action.Params.model_validate(rendered)
        except TemplateError as e:
            return ActionResult(ok=False, error=str(e))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            return ActionResult(ok=False, error=f"with.{loc}: {err['msg']} (after rendering)")
        ctx = ActionContext(
            execution_id=meta.id,
            step_id=step.id,
            env=alert_environment(meta, step_id=step.id, execution_url=url),
            output_limit=self.config.settings.history.output_tail_bytes,
        )
        try:
            return await asyncio.wait_for(
                action.run(params, ctx, timeout_s=timeout_s), timeout_s + ACTION_GRACE_S
            )
        except TimeoutError:
            return ActionResult(ok=False, error=f"timed out after {timeout_s:g}s", timed_out=True)
