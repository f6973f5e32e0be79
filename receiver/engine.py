"""The orchestrator: the one place where the pure core meets the store and the actions.

`ingest` turns a payload into one atomic admission; worker tasks claim queued executions, run
them with a Runner (runner.py) and record how they ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from receiver.actions import ACTIONS, ActionContext, action_params
from receiver.actions.notify import NotifyParams
from receiver.config import Config
from receiver.dedup import AdmissionPlan, AlertPlan, Candidate, Outcome, plan_admission, seen_key
from receiver.errors import Conflict, NotFound, StoreUnavailable
from receiver.execution import Decision, Execution, ExecutionMeta, Verdict, iso, new_execution_id
from receiver.logs import get_logger
from receiver.metrics import Metrics
from receiver.models import Alert, WebhookPayload
from receiver.persist import until_stored
from receiver.playbook import Playbook, load_playbook
from receiver.rules import matching
from receiver.runner import Runner
from receiver.states import ExecutionStatus
from receiver.stats import Report
from receiver.store.base import HistoryQuery, PlaybookDefinition, Store, stats_bucket
from receiver.yamlsource import Document

# How long a worker waits on the queue before looking again (also bounds how long shutdown waits).
CLAIM_WAIT_S = 1.0
CANCELLABLE = frozenset({ExecutionStatus.QUEUED, ExecutionStatus.RUNNING, ExecutionStatus.WAITING_APPROVAL})
# Ends that count as a failure of the rule's playbook for its circuit breaker.
FAILED_ENDS = frozenset(
    {
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.ROLLED_BACK,
        ExecutionStatus.ROLLBACK_FAILED,
    }
)
# Outcomes after which the rollbacks of the steps that succeeded run.
ROLLBACK_ON = frozenset({ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})
# Pause after the store failed, so an outage does not turn into a busy loop of errors.
STORE_RETRY_S = 1.0
# How often a worker tells the store it still runs an execution (and reads its status), so that
# an operator's cancel made through any replica stops it within about this long.
HEARTBEAT_S = 1.0
# A running execution taken over more often than this (its workers keep dying) fails instead.
MAX_TAKEOVERS = 5
# After the grace period, how long a stop waits for handed-back runs to let go of their steps.
ACTION_STOP_S = 10.0
# How often suppressed-alert counts go to the store for reports (lost on a crash: at most this).
STATS_FLUSH_S = 5.0
# A report reads at most this many executions (newest first), this many at a time, and says when
# it stopped short; without `since`, it covers a day.
STATS_SCAN_MAX = 20_000
STATS_PAGE = 500
DEFAULT_STATS_S = 86400.0
# How often each replica looks for approvals whose deadline passed.
APPROVAL_SWEEP_S = 1.0


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
        self.store = store
        self.metrics = metrics
        self.consumer = consumer
        self._clock = clock
        self._log = get_logger(consumer=consumer)
        self._active: dict[str, Runner] = {}  # executions this process runs now, by id
        # Every playbook version this process has loaded or fetched, for pinned executions.
        self._versions: dict[tuple[str, str], Playbook] = {}
        self.use_config(config)
        self._published = ""  # the config version whose playbooks the store has been given
        # Suppressed alerts by (rule, playbook, reason) not yet added to the store's counts.
        self._suppressed: Counter[tuple[str, str, str]] = Counter()
        self._background: set[asyncio.Task[Any]] = set()  # escalations on their way
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # ---- config -------------------------------------------------------------------------

    def use_config(self, config: Config) -> None:
        """Route, admit and start executions with `config` from now on (at start, and at each
        reload). Running executions keep the playbook they started with; queued ones run the
        version they were admitted with. Settings bound at start (store, listen, workers, auth)
        stay as they were."""
        self.config = config
        self._rules = {r.name: r for r in config.rules}
        self.integrations = config.settings.for_actions()
        for pb in config.playbooks.values():
            self._versions.setdefault((pb.name, pb.version), pb)

    async def _publish(self, config: Config) -> None:
        """Give the store this config's playbook versions before admitting anything with them,
        so a replica that has not loaded a version can still run an execution pinned to it."""
        if self._published == config.version:
            return
        await self.store.publish_playbooks(
            [PlaybookDefinition(p.name, p.version, p.definition) for p in config.playbooks.values()]
        )
        self._published = config.version

    async def _playbook_for(self, meta: ExecutionMeta) -> Playbook | str:
        """The playbook version an execution was admitted with, or why it cannot be had."""
        loaded = self.config.playbooks.get(meta.playbook)
        if loaded is not None and meta.playbook_version in ("", loaded.version):
            return loaded
        if not meta.playbook_version:
            return f"playbook {meta.playbook!r} is not loaded"
        key = (meta.playbook, meta.playbook_version)
        if key in self._versions:
            return self._versions[key]
        definition = await self.store.playbook_definition(*key)
        if definition is None:
            return f"playbook {meta.playbook!r} version {meta.playbook_version} is neither loaded nor stored"
        source = Document(
            file=f"(stored playbook {meta.playbook}@{meta.playbook_version})", data=json.loads(definition)
        )
        pb, errors = load_playbook(source, action_params())
        if pb is None:
            why = "; ".join(str(e) for e in errors)
            return f"playbook {meta.playbook!r} version {meta.playbook_version} no longer loads: {why}"
        self._versions[key] = pb
        return pb

    async def plan_of(self, meta: ExecutionMeta) -> list[dict[str, Any]] | None:
        """The steps of the playbook version an execution runs, each with the steps it needs
        (for drawing its DAG); None when that version cannot be had."""
        playbook = await self._playbook_for(meta)
        if isinstance(playbook, str):
            return None
        return [
            {"id": s.id, "action": s.action, "needs": list(playbook.plan.needs[s.id])} for s in playbook.steps
        ]

    # ---- ingest -------------------------------------------------------------------------

    def execution_url(self, execution_id: str) -> str:
        """Where the history API shows an execution."""
        return f"{self.config.settings.external_url.rstrip('/')}/api/v1/executions/{execution_id}"

    async def ingest(self, payload: WebhookPayload) -> IngestReport:
        """Route every alert and admit the payload in one store call; StoreUnavailable propagates."""
        m = self.metrics
        now = self._clock()
        received = Counter(a.status for a in payload.alerts)  # one metric update per status
        for status, count in received.items():
            m.alerts_received.labels(status).inc(count)
        report = IngestReport()
        for r in payload.rejected:
            m.alerts_rejected.inc()
            report.rejected.append({"index": r.index, "error": r.error})
        config = self.config  # one config for the whole payload, even if a reload lands meanwhile
        payload = await self._skip_seen(payload, report, now, config)
        plan = plan_admission(
            payload, config.rules, now=now, new_id=new_execution_id, playbooks=config.playbooks
        )
        for a in plan.unrouted:
            self._count_suppressed("no_rule")
            report.unrouted.append({"fingerprint": a.fingerprint, "alertname": a.name})
        for p in plan.problems:
            self._count_suppressed("template_error", p.rule, p.playbook)
            report.rejected.append({"fingerprint": p.alert.fingerprint, "rule": p.rule, "error": p.error})
            self._log.warning("route.failed", fingerprint=p.alert.fingerprint, rule=p.rule, error=p.error)
        if not plan.alerts:
            return report
        try:
            await self._publish(config)
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
                self._count_suppressed(d.outcome.value, meta.rule, meta.playbook)
                report.suppressed.append({**row, "reason": d.outcome.value})
                if d.outcome is Outcome.RATE_LIMITED:
                    self._breaker_opened(meta.rule, "rate", meta.alert)
        for u in result.resolved:
            report.resolved.append({"execution_id": u.execution_id, "cancelled": u.cancelled})
            self._log.info("execution.alert_resolved", execution=u.execution_id, cancelled=u.cancelled)
        return report

    async def _skip_seen(
        self, payload: WebhookPayload, report: IngestReport, now: float, config: Config
    ) -> WebhookPayload:
        """Answer the alerts already processed (re-sends, HA peers' copies) as duplicates after
        one cheap lookup, without rendering their rules; the rest go on to admission."""
        try:
            known = await self.store.seen([seen_key(a) for a in payload.alerts], now)
        except StoreUnavailable:
            self.metrics.store_errors.labels("admit").inc()
            raise
        fresh = []
        duplicates = 0
        for a, was_seen in zip(payload.alerts, known, strict=True):
            if not was_seen:
                fresh.append(a)
                continue
            if a.status == "resolved":
                continue
            for rule in matching(a, config.rules):
                duplicates += 1
                self._suppressed[rule.name, rule.playbook, Outcome.DUPLICATE.value] += 1
                report.suppressed.append(
                    {
                        "rule": rule.name,
                        "playbook": rule.playbook,
                        "fingerprint": a.fingerprint,
                        "alertname": a.name,
                        "reason": Outcome.DUPLICATE.value,
                    }
                )
        if duplicates:
            self.metrics.alerts_suppressed.labels(Outcome.DUPLICATE.value).inc(duplicates)
        if len(fresh) == len(payload.alerts):
            return payload
        return payload.model_copy(update={"alerts": fresh})

    def _count_suppressed(self, reason: str, rule: str = "", playbook: str = "") -> None:
        """One alert a rule did not run (or no rule matched): in the metric and, by rule, in the
        counts the next flush adds to the store for reports."""
        self._suppressed[rule, playbook, reason] += 1
        self.metrics.alerts_suppressed.labels(reason).inc()

    async def flush_stats(self) -> None:
        """Add the suppressed counts gathered since the last flush to the store's; kept for the
        next flush if the store is down."""
        counts, self._suppressed = self._suppressed, Counter()
        if not counts:
            return
        try:
            await self.store.count_suppressed(counts, self._clock())
        except StoreUnavailable:
            self._suppressed.update(counts)
            raise

    async def _flush_stats_periodically(self) -> None:
        while not self._stopping:
            await asyncio.sleep(STATS_FLUSH_S)
            try:
                await self.flush_stats()
            except StoreUnavailable as e:
                self.metrics.store_errors.labels("stats").inc()
                self._log.warning("stats.store_unavailable", error=str(e))

    async def report(self, since: float | None) -> dict[str, Any]:
        """GET /api/v1/stats: how remediation went since `since` (default: a day ago), read newest
        first one page at a time, at most STATS_SCAN_MAX executions."""
        now = self._clock()
        if since is None:
            since = now - DEFAULT_STATS_S
        built = Report()
        scanned = 0
        cursor: str | None = None
        while scanned < STATS_SCAN_MAX:
            page = await self.store.history(
                HistoryQuery(since=since, cursor=cursor, limit=min(STATS_PAGE, STATS_SCAN_MAX - scanned))
            )
            for e in page.items:
                built.add(e)
            scanned += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        built.add_suppressed(await self.store.suppressed_since(since))
        return {
            "since": iso(since),
            "until": iso(now),
            "suppressed_since": iso(stats_bucket(since)),
            "executions_scanned": scanned,
            "truncated": cursor is not None,
            **built.as_json(),
        }

    # ---- circuit breakers ---------------------------------------------------------------

    async def _count_for_breaker(self, rule_name: str, status: ExecutionStatus, alert: Alert) -> None:
        """Count a failed end towards the rule's `rate_limit.failures`; a success resets it."""
        rule = self._rules.get(rule_name)
        if rule is None or rule.rate_limit is None or rule.rate_limit.failures is None:
            return
        if status not in FAILED_ENDS and status is not ExecutionStatus.SUCCEEDED:
            return  # cancelled or rejected: people decided, not the playbook
        rl = rule.rate_limit
        assert rl.failures is not None
        try:
            opened = await self.store.note_outcome(
                rule_name, failed=status in FAILED_ENDS, failures=rl.failures, per_s=rl.per, now=self._clock()
            )
        except StoreUnavailable:
            return
        if opened:
            self._breaker_opened(rule_name, "failures", alert)

    def _breaker_opened(self, rule_name: str, reason: str, alert: Alert) -> None:
        """Log, count and escalate (in the background) a rule's breaker opening."""
        rule = self._rules[rule_name]
        assert rule.rate_limit is not None
        rl = rule.rate_limit
        self.metrics.breaker_opened.labels(rule_name, reason).inc()
        why = (
            f"it ran {rl.max} times within {rl.per:g}s"
            if reason == "rate"
            else f"it failed {rl.failures} times in a row"
        )
        self._log.warning("rule.circuit_open", rule=rule_name, reason=reason, detail=why)
        notifiers = rl.notify or self.integrations.outcome.notify
        if not notifiers:
            return
        url = f"{self.config.settings.external_url.rstrip('/')}/api/v1/rules/{rule_name}/reset"
        body = (
            f"Rule {rule_name} stopped remediating: {why}. Its alerts ({alert.name} and the rest) are"
            f" left to people for {rl.per:g}s, or until an operator resets it: POST {url}"
        )
        params = NotifyParams(
            to=notifiers, title=f"Remediation paused: rule {rule_name}", body=body, type="warning"
        )
        ctx = ActionContext(execution_id="", step_id="escalation", integrations=self.integrations)
        task = asyncio.create_task(ACTIONS["notify"].run(params, ctx, timeout_s=30.0))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reset_breaker(self, rule_name: str) -> bool:
        """An operator closes a rule's circuit breaker; True if it was open."""
        rule = self._rules.get(rule_name)
        if rule is None:
            raise NotFound("rule", rule_name)
        if rule.rate_limit is None:
            raise Conflict(f"rule {rule_name} has no rate_limit, so no circuit breaker")
        was_open = await self.store.reset_breaker(rule_name)
        self._log.info("rule.circuit_reset", rule=rule_name, was_open=was_open)
        return was_open

    # ---- operators ----------------------------------------------------------------------

    async def decide(self, execution_id: str, verdict: Verdict, *, by: str, comment: str = "") -> Execution:
        """Approve or reject an execution waiting for approval; a worker then resumes it."""
        current = await self.store.get(execution_id)
        if current is None:
            raise NotFound("execution", execution_id)
        if current.status is not ExecutionStatus.WAITING_APPROVAL:
            raise Conflict(f"execution {execution_id} is {current.status.value}, not waiting for approval")
        now = self._clock()
        decision = Decision(verdict=verdict, by=by, at=now, comment=comment)
        if not await self.store.decide(execution_id, decision, now=now):
            after = await self.store.status(execution_id)
            state = after.value if after else "gone"
            raise Conflict(f"execution {execution_id} became {state} before it could be {verdict.value}")
        self.metrics.approvals.labels(verdict.value).inc()
        self._log.info("approval.decided", execution=execution_id, verdict=verdict.value, by=by)
        after_get = await self.store.get(execution_id)
        assert after_get is not None
        return after_get

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel a queued, running or waiting execution; a running one stops within HEARTBEAT_S."""
        current = await self.store.get(execution_id)
        if current is None:
            raise NotFound("execution", execution_id)
        if current.status not in CANCELLABLE:
            raise Conflict(
                f"execution {execution_id} is {current.status.value};"
                " only queued, running or waiting_approval ones can be cancelled"
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
        update: dict[str, Any] = {"id": new_execution_id(now), "created_at": now, "retry_of": old.id}
        current = self.config.playbooks.get(old.meta.playbook)
        if current is not None:  # an operator retries with the playbook as loaded now
            update["playbook_version"] = current.version
        meta = old.meta.model_copy(update=update)
        await self._admit_one(meta, now)
        self._log.info("execution.retried", execution=meta.id, retry_of=old.id)
        return meta

    async def enqueue(
        self, *, alert: Alert, rule: str, playbook: str, params: dict[str, str]
    ) -> ExecutionMeta:
        """Queue one execution directly, past duplicate and cooldown checks (`receiver run`)."""
        now = self._clock()
        loaded = self.config.playbooks.get(playbook)
        meta = ExecutionMeta(
            id=new_execution_id(now),
            rule=rule,
            playbook=playbook,
            playbook_version=loaded.version if loaded is not None else "",
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
        await self._publish(self.config)
        result = await self.store.admit(plan, now)
        assert [d.outcome for d in result.decided] == [Outcome.ADMITTED], result
        self.metrics.alerts_admitted.labels(meta.rule).inc()

    # ---- workers ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the configured number of worker tasks and the approval sweeper."""
        for n in range(self.config.settings.workers):
            self._tasks.append(asyncio.create_task(self._worker(n), name=f"worker-{n}"))
        self._tasks.append(asyncio.create_task(self._sweep_approvals(), name="approvals"))
        self._tasks.append(asyncio.create_task(self._flush_stats_periodically(), name="stats"))

    async def _sweep_approvals(self) -> None:
        """Reject approvals nobody decided in time (any replica may; the store decides once), and
        sample the queue's depth for the metric."""
        while not self._stopping:
            await asyncio.sleep(APPROVAL_SWEEP_S)
            try:
                await self.expire_approvals()
                self.metrics.queue_depth.set(await self.store.backlog())
            except StoreUnavailable as e:
                self.metrics.store_errors.labels("approvals").inc()
                self._log.warning("approvals.store_unavailable", error=str(e))

    async def expire_approvals(self) -> list[str]:
        """Decide every approval past its deadline as expired; the ids this call decided."""
        now = self._clock()
        decided = []
        for ident in await self.store.expired_approvals(now):
            expired = Decision(verdict=Verdict.EXPIRED, by="receiver", at=now)
            if await self.store.decide(ident, expired, now=now):
                decided.append(ident)
                self.metrics.approvals.labels(Verdict.EXPIRED.value).inc()
                self._log.info("approval.expired", execution=ident)
        return decided

    @property
    def stopping(self) -> bool:
        """Whether stop() has begun: webhooks are refused and no new work is claimed."""
        return self._stopping

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop claiming work; let running steps finish for up to grace_s, handing each execution
        back at a step boundary for another worker to go on with; then stop what still runs (its
        process groups killed) and hand that back too."""
        self._stopping = True
        for runner in list(self._active.values()):
            runner.drain()
        workers = [t for t in self._tasks if t.get_name().startswith("worker-")]
        if workers and grace_s > 0:
            await asyncio.wait(workers, timeout=grace_s)
        for runner in list(self._active.values()):
            runner.hand_back()
        if workers:
            await asyncio.wait(workers, timeout=ACTION_STOP_S)
        for t in [*self._tasks, *self._background]:
            t.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(StoreUnavailable):
            await self.flush_stats()

    async def _worker(self, n: int) -> None:
        consumer = f"{self.consumer}-{n}"
        task = asyncio.current_task()
        while not self._stopping:
            try:
                execution = await self.store.claim(consumer, CLAIM_WAIT_S)
                if execution is not None:
                    await self.execute(execution, consumer)
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

    async def execute(self, execution: Execution, consumer: str) -> ExecutionStatus:
        """Run a claimed execution until it ends or parks, and record how; `consumer` is the
        worker that claimed it, whose claim a heartbeat keeps alive meanwhile."""
        meta = execution.meta
        log = self._log.bind(
            execution=meta.id,
            fingerprint=meta.alert.fingerprint,
            rule=meta.rule,
            playbook=meta.playbook,
        )
        resumed = execution.status is ExecutionStatus.ROLLING_BACK or any(
            t.event == "resumed" for t in execution.timeline[-1:]
        )
        log.info("execution.resumed" if resumed else "execution.started")
        takeovers = sum(1 for t in execution.timeline if t.event == "resumed")
        if takeovers > MAX_TAKEOVERS:
            # A run that kills its worker every time would otherwise go round the replicas forever.
            dead = f"taken over {takeovers} times: every worker running it stopped answering"
            await self.store.transition(meta.id, ExecutionStatus.FAILED, now=self._clock(), error=dead)
            log.error("execution.crash_loop", takeovers=takeovers)
            return ExecutionStatus.FAILED
        playbook = await self._playbook_for(meta)
        if isinstance(playbook, str):
            missing = playbook
            await self.store.transition(meta.id, ExecutionStatus.FAILED, now=self._clock(), error=missing)
            log.info("execution.finished", outcome="failed", error=missing)
            return ExecutionStatus.FAILED
        runner = Runner(
            execution=execution,
            playbook=playbook,
            store=self.store,
            metrics=self.metrics,
            url=self.execution_url(meta.id),
            output_limit=self.config.settings.history.output_limit_bytes,
            clock=self._clock,
            log=log,
            integrations=self.integrations,
        )
        self.metrics.executions_running.inc()
        self._active[meta.id] = runner
        if self._stopping:
            runner.drain()
        done = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(runner, consumer, done))
        try:
            status, error = await self._drive(runner, execution.status, log)
        finally:
            done.set()  # ends the heartbeat even if the cancel below is swallowed mid-call
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._active.pop(meta.id, None)
            self.metrics.executions_running.dec()
        if runner.handed_back:
            await runner.checkpoint()  # the steps that ended before it stopped (unless taken over)
            # If the store is down, the execution is reclaimed after reclaim_after instead.
            with contextlib.suppress(StoreUnavailable):
                await self.store.release(meta.id, consumer, now=self._clock())
            log.info("execution.handed_back")
            return status
        if runner.abandoned:
            return status
        if status is ExecutionStatus.WAITING_APPROVAL:
            approval = runner.approval
            assert approval is not None
            await runner.checkpoint()
            await until_stored(
                lambda: self.store.await_approval(meta.id, approval, now=self._clock()),
                what="waiting_approval",
                log=log,
                give_up=lambda: self._stopping,
            )
            self.metrics.approvals.labels("requested").inc()
            log.info("execution.waiting_approval", step=approval.step, url=runner.url)
            return status
        end, why = status, error
        steps, events = runner.unwritten()  # the last steps' ends: written with the outcome
        await until_stored(
            lambda: self.store.transition(
                meta.id, end, now=self._clock(), error=why, steps=steps, events=events
            ),
            what=end.value,
            log=log,
            give_up=lambda: self._stopping,
        )
        await self._count_for_breaker(meta.rule, status, meta.alert)
        self.metrics.executions.labels(meta.playbook, status.value).inc()
        log.info("execution.finished", outcome=status.value, error=error)
        return status

    async def _drive(
        self, runner: Runner, status: ExecutionStatus, log: Any
    ) -> tuple[ExecutionStatus, str | None]:
        """The run, its rollbacks when it failed, and its hooks; the outcome to record."""
        meta = runner.meta
        error: str | None = None
        if status is not ExecutionStatus.ROLLING_BACK:
            status, error = await runner.run()
            if runner.abandoned or runner.handed_back or status is ExecutionStatus.WAITING_APPROVAL:
                return status, error
            if status in ROLLBACK_ON and runner.to_roll_back():
                why = error
                await runner.checkpoint()  # the failure before the rolling_back that it causes
                await until_stored(
                    lambda: self.store.transition(
                        meta.id, ExecutionStatus.ROLLING_BACK, now=self._clock(), error=why
                    ),
                    what="rolling_back",
                    log=log,
                    give_up=lambda: self._stopping,
                )
                log.info("execution.rolling_back", error=error)
                status = ExecutionStatus.ROLLING_BACK
        if status is ExecutionStatus.ROLLING_BACK:
            status = await runner.rollback()
        await runner.hooks(status, error)
        await runner.finish()
        if status in (ExecutionStatus.ROLLED_BACK, ExecutionStatus.ROLLBACK_FAILED):
            error = None  # the failure that caused the rollback stays recorded
        return status, error

    async def _heartbeat(self, runner: Runner, consumer: str, done: asyncio.Event) -> None:
        """Keep the worker's claim alive until `done`; stop the runner on an operator's cancel or
        when another worker has taken the execution over.

        `done`, not only cancellation, ends it: redis-py can swallow a cancellation that lands in
        the middle of a command and return the reply, and a heartbeat that went on would keep a
        finished execution's claim, and its worker waiting for it, forever.
        """
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_S):
                    await done.wait()
            if done.is_set():
                return
            try:
                lease = await self.store.heartbeat(runner.meta.id, consumer)
            except StoreUnavailable:
                continue
            if lease.status is ExecutionStatus.CANCELLED:
                runner.cancel()
                return
            if not lease.held:
                runner.abandon()
                return
