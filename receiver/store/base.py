"""The store contract: every state the receiver shares lives behind this interface.

Two adapters implement it (redis.py for production and several replicas, sqlite.py for one
process with no server) and one contract test suite runs against both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from receiver.dedup import AdmissionPlan, Outcome
from receiver.execution import Execution, StepRecord, TimelineEvent
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


@dataclass(frozen=True)
class AdmitResult:
    """What one atomic admission decided for a payload."""

    decided: list[Decided] = field(default_factory=list)
    resolved: list[ResolvedUpdate] = field(default_factory=list)


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


class Store(Protocol):
    """Shared state: admission, the work queue, execution records and history."""

    name: str

    async def ping(self) -> None:
        """Return when the store answers; StoreUnavailable otherwise."""

    async def admit(self, plan: AdmissionPlan, now: float) -> AdmitResult:
        """Decide a whole payload atomically: dedup, cooldown, records, enqueue, resolutions."""

    async def claim(self, consumer: str, wait_s: float) -> Execution | None:
        """Take the next queued execution and mark it running; None if none came within wait_s."""

    async def save_steps(self, execution_id: str, steps: list[StepRecord], event: TimelineEvent) -> None:
        """Checkpoint the steps of a running execution together with a timeline event."""

    async def transition(
        self, execution_id: str, status: ExecutionStatus, *, now: float, error: str | None
    ) -> bool:
        """Move an execution to `status` if states.TRANSITIONS allows it from where it is.

        Sets finished_at when `status` is terminal, keeps a previous error when `error` is None,
        and returns False (changing nothing) when the move is not allowed.
        """

    async def status(self, execution_id: str) -> ExecutionStatus | None:
        """Just the status of an execution (cheap enough to poll), or None."""

    async def get(self, execution_id: str) -> Execution | None:
        """One execution with its steps and timeline, or None."""

    async def history(self, query: HistoryQuery) -> Page:
        """A page of executions, newest first."""

    async def close(self) -> None:
        """Release connections and files."""
