"""Execution states: which are terminal and which moves are allowed, as a table."""

from __future__ import annotations

import pytest

from receiver.states import TERMINAL, ExecutionStatus, can_transition, sources_of

Q, R, S, F, T, C = (
    ExecutionStatus.QUEUED,
    ExecutionStatus.RUNNING,
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.TIMED_OUT,
    ExecutionStatus.CANCELLED,
)
RB, RBD, RBF = ExecutionStatus.ROLLING_BACK, ExecutionStatus.ROLLED_BACK, ExecutionStatus.ROLLBACK_FAILED
W, RJ = ExecutionStatus.WAITING_APPROVAL, ExecutionStatus.REJECTED


def test_terminal_states() -> None:
    """Exactly the end states are terminal; queued, running, waiting_approval and rolling_back are not."""
    assert {Q, R, W, RB}.isdisjoint(TERMINAL)
    assert set(ExecutionStatus) - {Q, R, W, RB} == set(TERMINAL)


@pytest.mark.parametrize(
    ("a", "b", "ok"),
    [
        (Q, R, True),
        (Q, C, True),
        (Q, S, False),
        (R, S, True),
        (R, F, True),
        (R, T, True),
        (R, RB, True),
        (RB, RBD, True),
        (RB, RBF, True),
        (RB, S, False),
        (S, F, False),
        (C, R, False),
        (RBD, RB, False),
        (R, W, True),
        (W, Q, True),
        (W, C, True),
        (W, R, False),
        (W, S, False),
        (R, RJ, True),
        (RJ, Q, False),
    ],
)
def test_transitions(a: ExecutionStatus, b: ExecutionStatus, ok: bool) -> None:
    """Allowed moves follow the state machine of the design."""
    assert can_transition(a, b) is ok


def test_sources_of() -> None:
    """The store checks a move against every state it may come from."""
    assert sources_of(C) == {Q, R, W}
    assert sources_of(Q) == {W}
    assert sources_of(RBD) == {RB}
