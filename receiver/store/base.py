"""The store contract: every state the receiver shares lives behind this interface.

Two adapters implement it (redis.py for production and several replicas, sqlite.py for one
process with no server) and one contract test suite runs against both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from receiver.dedup import AdmissionPlan, Outcome
from receiver.execution import Approval, Decision, Execution, StepRecord, TimelineEvent
from receiver.states import ExecutionStatus


@dataclass(frozen=True)
class Decided:
    """Admission's answer for one candidate execution."""

    execution_id: str
    outcome: Outcome


@dataclass(frozen=True)
class ResolvedUpdate:
    """An execution whose alert resolved; `cancelled` when it was queued and its rule cancels."""

    execution_id: str
    cancelled: bool


# Suppressed-alert counts are kept in buckets of this many seconds: a report's `since` is
# rounded down to one.
STATS_BUCKET_S = 300


def stats_bucket(t: float) -> int:
    """The start of the stats bucket holding time `t`."""
    return int(t // STATS_BUCKET_S) * STATS_BUCKET_S


@dataclass(frozen=True)
class PlaybookDefinition:
    """One version of a playbook as loaded: the document it came from, as canonical JSON."""

    name: str
    version: str
    definition: str


@dataclass(frozen=True)
class AdmitResult:
    """What one atomic admission decided for a payload."""

    decided: list[Decided] = field(default_factory=list)
    resolved: list[ResolvedUpdate] = field(default_factory=list)


def taken_over(consumer: str) -> str:
    """The detail of the `resumed` event: which worker took a silent worker's execution over."""
    return f"worker {consumer} took over: the previous worker stopped answering"


@dataclass(frozen=True)
class Lease:
    """A heartbeat's answer: the execution's status, and whether this worker still holds it.

    `held` turns False when another worker took the execution over because this one stayed
    silent longer than `StoreLimits.reclaim_after_s`; the old worker must then stop writing.
    """

    status: ExecutionStatus | None
    held: bool


@dataclass(frozen=True)
class HistoryQuery:
    """Filters for the history list; all optional. Results are newest first."""

    alertname: str | None = None
    rule: str | None = None
    playbook: str | None = None
    status: ExecutionStatus | None = None
    fingerprint: str | None = None
    since: float | None = None
    until: float | None = None
    cursor: str | None = None  # the id of the last item of the previous page
    limit: int = 50

    def accepts(self, e: Execution) -> bool:
        """Whether an execution passes every filter (the indexes narrow first; this decides)."""
        m = e.meta
        return (
            (self.alertname is None or m.alert.name == self.alertname)
            and (self.rule is None or m.rule == self.rule)
            and (self.playbook is None or m.playbook == self.playbook)
            and (self.status is None or e.status == self.status)
            and (self.fingerprint is None or m.alert.fingerprint == self.fingerprint)
        )


@dataclass(frozen=True)
class Page:
    """One page of history and the cursor for the next (None at the end)."""

    items: list[Execution]
    next_cursor: str | None


@dataclass(frozen=True)
class StoreLimits:
    """How long and how much the store keeps."""

    retention_s: float = 7 * 86400.0
    max_executions: int = 100_000
    # A firing alert keeps its startsAt for as long as it fires, and Alertmanager re-sends it every
    # repeat_interval (4h by default); the idempotency key must outlive that or a long-firing alert
    # would be remediated again. One week by default, like the history.
    idempotency_ttl_s: float = 7 * 86400.0
    # A worker heartbeats each execution it runs every second; one silent this long is presumed
    # dead and another worker takes its execution over. Long enough to ride out a GC pause or a
    # brief network partition, short enough that a crash delays the remediation only a little.
    reclaim_after_s: float = 30.0
    # At most this many executions queued or running at once; an admission that would go past it
    # is refused whole (Overloaded), so a storm is answered 503 and retried, never dropped.
    max_queued: int = 10_000


class Store(Protocol):
    """Shared state: admission, the work queue, execution records and history."""

    name: str

    async def ping(self) -> None:
        """Return when the store answers; StoreUnavailable otherwise."""

    async def seen(self, keys: list[str], now: float) -> list[bool]:
        """Whether each idempotency key was already processed: one cheap round trip that lets
        re-sent notifications, the common case in a storm, skip routing and admission. Only a
        hint: admit() decides again, atomically."""

    async def admit(self, plan: AdmissionPlan, now: float) -> AdmitResult:
        """Decide a whole payload atomically: dedup, cooldown, records, enqueue, resolutions.

        Raises Overloaded, recording nothing, when its new executions could push the number
        queued or running past max_queued.
        """

    async def claim(self, consumer: str, wait_s: float) -> Execution | None:
        """Take the next execution to run, or None if none came within wait_s.

        First one whose worker has been silent for `reclaim_after_s` (returned as it stands:
        running or rolling_back, with a `resumed` event), else the next queued one, moved to
        running. A queued execution whose lock another holds waits (lock_policy wait) or is
        cancelled (skip) instead of being returned.
        """

    async def heartbeat(self, execution_id: str, consumer: str) -> Lease:
        """Keep this worker's claim on a running execution alive, and read its status."""

    async def note_outcome(self, rule: str, *, failed: bool, failures: int, per_s: float, now: float) -> bool:
        """Record how an execution of a rule with a circuit breaker ended: a success clears its
        failures in a row; the `failures`-th failure in a row opens the breaker for per_s (True)."""

    async def reset_breaker(self, rule: str) -> bool:
        """An operator closes the rule's breaker and clears its rate window and failures; True if
        it was open."""

    async def backlog(self) -> int:
        """How many executions are queued or running now (what max_queued bounds)."""

    async def breakers(self, rules: list[str], now: float) -> dict[str, float]:
        """Which of these rules have an open breaker, and when each closes by itself."""

    async def rate_counts(self, windows: Mapping[str, float], now: float) -> dict[str, int]:
        """For each rule, how many of its executions were admitted within its window (seconds
        back from now): what its rate_limit counts. Reads only."""
        ...

    async def cooldowns(self, keys: list[str], now: float) -> dict[str, float]:
        """Which of these cooldown keys are cooling down, and when each cooldown ends."""

    async def count_suppressed(self, counts: Mapping[tuple[str, str, str], int], now: float) -> None:
        """Add suppressed-alert counts by (rule, playbook, reason) to the bucket of `now`; kept
        as long as the history."""
        ...

    async def suppressed_since(self, since: float) -> dict[tuple[str, str, str], int]:
        """Suppressed-alert counts summed over the buckets from the one holding `since` on."""
        ...

    async def publish_playbooks(self, definitions: Sequence[PlaybookDefinition]) -> None:
        """Keep each playbook version's definition, so any replica can run an execution pinned
        to a version it has not loaded (after a reload); a version already kept stays as is."""
        ...

    async def playbook_definition(self, name: str, version: str) -> str | None:
        """A playbook version's definition (canonical JSON), or None if never published."""
        ...

    async def release(self, execution_id: str, consumer: str, *, now: float) -> bool:
        """Hand a running execution back (this worker is stopping): the next claim anywhere takes
        it over at once, as if its worker had been silent for reclaim_after_s."""

    async def await_approval(self, execution_id: str, approval: Approval, *, now: float) -> bool:
        """running -> waiting_approval: record the request and release the worker's claim."""

    async def decide(self, execution_id: str, decision: Decision, *, now: float) -> bool:
        """waiting_approval -> queued: record the decision and queue the execution to resume.

        False (changing nothing) when the execution is not waiting for approval.
        """

    async def expired_approvals(self, now: float) -> list[str]:
        """Executions waiting for an approval whose deadline has passed."""

    async def save_steps(
        self, execution_id: str, steps: list[StepRecord], events: Sequence[TimelineEvent]
    ) -> None:
        """Checkpoint the steps of a running execution together with its new timeline events."""

    async def transition(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        now: float,
        error: str | None,
        steps: list[StepRecord] | None = None,
        events: Sequence[TimelineEvent] = (),
    ) -> bool:
        """Move an execution to `status` if states.TRANSITIONS allows it from where it is.

        Sets finished_at when `status` is terminal, keeps a previous error when `error` is None,
        and returns False (changing nothing of the status) when the move is not allowed. `steps`
        and `events`, a runner's last checkpoint, are written first in the same call either way.
        """

    async def status(self, execution_id: str) -> ExecutionStatus | None:
        """Just the status of an execution (cheap enough to poll), or None."""

    async def get(self, execution_id: str) -> Execution | None:
        """One execution with its steps and timeline, or None."""

    async def history(self, query: HistoryQuery) -> Page:
        """A page of executions, newest first."""

    async def close(self) -> None:
        """Release connections and files."""
