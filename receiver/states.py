"""Execution and step states, and which transitions between them are allowed. Pure."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """Where an execution stands."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    REJECTED = "rejected"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"

    @property
    def terminal(self) -> bool:
        """Whether nothing more will happen to an execution in this state."""
        return self in TERMINAL


class StepStatus(StrEnum):
    """Where one step of an execution stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    WAITING_APPROVAL = "waiting_approval"


TERMINAL = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.REJECTED,
        ExecutionStatus.ROLLED_BACK,
        ExecutionStatus.ROLLBACK_FAILED,
    }
)

TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.QUEUED: frozenset({ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED}),
    ExecutionStatus.RUNNING: frozenset(
        {
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.FAILED,
            ExecutionStatus.TIMED_OUT,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.ROLLING_BACK,
            ExecutionStatus.WAITING_APPROVAL,
            ExecutionStatus.REJECTED,
        }
    ),
    # An approval's decision (or its deadline) queues the execution again for any worker to resume.
    ExecutionStatus.WAITING_APPROVAL: frozenset({ExecutionStatus.QUEUED, ExecutionStatus.CANCELLED}),
    ExecutionStatus.ROLLING_BACK: frozenset({ExecutionStatus.ROLLED_BACK, ExecutionStatus.ROLLBACK_FAILED}),
}


def can_transition(current: ExecutionStatus, new: ExecutionStatus) -> bool:
    """Whether an execution may move from `current` to `new`."""
    return new in TRANSITIONS.get(current, frozenset())


def sources_of(new: ExecutionStatus) -> frozenset[ExecutionStatus]:
    """Every state from which an execution may move to `new` (the store checks against these)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if new in targets)
