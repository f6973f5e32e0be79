"""The orchestrator: the one place where the pure core meets the store and the actions.

`ingest` turns a payload into one atomic admission; worker tasks claim queued executions, run
them with a Runner (runner.py) and record how they ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from receiver.config import Config
from receiver.dedup import AdmissionPlan, AlertPlan, Candidate, Outcome, plan_admission
from receiver.errors import Conflict, NotFound, StoreUnavailable
from receiver.execution import Execution, ExecutionMeta, new_execution_id
from receiver.logs import get_logger
from receiver.metrics import Metrics
from receiver.models import Alert, WebhookPayload
from receiver.runner import Runner
from receiver.states import ExecutionStatus
from receiver.store.base import Store

# How long a worker waits on the queue before looking again (also bounds how long shutdown waits).
CLAIM_WAIT_S = 1.0
# Outcomes after which the rollbacks of the steps that succeeded run.
ROLLBACK_ON = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})
# Pause after the store failed, so an outage does not turn into a busy loop of errors.
STORE_RETRY_S = 1.0


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

    # ---- operators ----------------------------------------------------------------------

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel a queued or running execution; a running one stops within CANCEL_POLL_S."""
        current = await self.store.get(execution_id)
        if current is None:
            raise NotFound("execution", execution_id)
        if current.status not in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING):
            raise Conflict(
                f"execution {execution_id} is {current.status.value};"
                " only queued or running ones can be cancelled"
            )
        moved = await self.store.transition(
            execution_id, ExecutionStatus.CANCELLED, now=self._clock(), error="cancelled by an operator"
        )
        after = await self.store.get(execution_id)
        assert after is not None
        if not moved:
            raise Conflict(
                f"execution {execution_id} became {after.status.value} before it could be cancelled"
            )
        self._log.info("execution.cancelled", execution=execution_id, was=current.status.value)
        return after

    async def retry(self, execution_id: str) -> ExecutionMeta:
        """Queue a new execution of an ended one's playbook for the same alert, linked to it.

        An operator's retry is deliberate: it bypasses the duplicate and cooldown checks.
        """
        old = await self.store.get(execution_id)
        if old is None:
            raise NotFound("execution", execution_id)
        if not old.status.terminal:
            raise Conflict(
                f"execution {execution_id} is still {old.status.value}; retry it once it has ended"
            )
        now = self._clock()
        meta = old.meta.model_copy(
            update={"id": new_execution_id(now), "created_at": now, "retry_of": old.id}
        )
        await self._admit_one(meta, now)
        self._log.info("execution.retried", execution=meta.id, retry_of=old.id)
        return meta

    async def enqueue(
        self, *, alert: Alert, rule: str, playbook: str, params: dict[str, str]
    ) -> ExecutionMeta:
        """Queue one execution directly, past duplicate and cooldown checks (`receiver run`)."""
        now = self._clock()
        meta = ExecutionMeta(
            id=new_execution_id(now),
            rule=rule,
            playbook=playbook,
            params=params,
            dedup_key="",
            on_resolved="ignore",
            alert=alert,
            created_at=now,
        )
        await self._admit_one(meta, now)
        return meta

    async def _admit_one(self, meta: ExecutionMeta, now: float) -> None:
        plan = AdmissionPlan(
            alerts=(
                AlertPlan(
                    alert=meta.alert,
                    seen_key=f"direct:{meta.id}",  # unique: never a duplicate
                    candidates=(Candidate(meta=meta, cooldown_key="", cooldown_s=0.0),),
                ),
            )
        )
        result = await self.store.admit(plan, now)
        assert [d.outcome for d in result.decided] == [Outcome.ADMITTED], result
        self.metrics.alerts_admitted.labels(meta.rule).inc()

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
                runner = Runner(
                    meta=meta,
                    playbook=playbook,
                    store=self.store,
                    metrics=self.metrics,
                    url=self.execution_url(meta.id),
                    output_limit=self.config.settings.history.output_limit_bytes,
                    clock=self._clock,
                    log=log,
                )
                status, error = await runner.run()
                if status in ROLLBACK_ON and runner.to_roll_back():
                    await self.store.transition(
                        meta.id, ExecutionStatus.ROLLING_BACK, now=self._clock(), error=error
                    )
                    log.info("execution.rolling_back", error=error)
                    status = await runner.rollback()
                await runner.hooks(status, error)
                if status in (ExecutionStatus.ROLLED_BACK, ExecutionStatus.ROLLBACK_FAILED):
                    error = None  # the failure that caused the rollback stays recorded
            await self.store.transition(meta.id, status, now=self._clock(), error=error)
        finally:
            self.metrics.executions_running.dec()
        self.metrics.executions.labels(meta.playbook, status.value).inc()
        log.info("execution.finished", outcome=status.value, error=error)
        return status
