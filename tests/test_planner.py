"""The planner: DAG validation and next-step decisions, as tables of plain data."""

from __future__ import annotations

import pytest

from receiver.planner import PlanError, build_plan, next_steps
from receiver.states import StepStatus

P, R, S, F, C = (
    StepStatus.PENDING,
    StepStatus.RUNNING,
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.CANCELLED,
)

# a -> (b, c in parallel) -> d joins them; e follows d in file order (no needs).
DIAMOND = build_plan([("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("e", None)])
SEQUENTIAL = build_plan([("one", None), ("two", None), ("three", None)])


def test_without_needs_steps_follow_file_order() -> None:
    """A step without needs depends on the step before it; the first on nothing."""
    assert SEQUENTIAL.needs == {"one": (), "two": ("one",), "three": ("two",)}


def test_empty_needs_means_no_dependency() -> None:
    """`needs: []` lets a step start at once, beside the others."""
    plan = build_plan([("a", None), ("b", [])])
    assert next_steps(plan, {}).ready == ("a", "b")


@pytest.mark.parametrize(
    ("status", "ready", "cancel", "finished"),
    [
        ({}, ("a",), (), False),
        ({"a": R}, (), (), False),
        ({"a": S}, ("b", "c"), (), False),  # parallel branches
        ({"a": S, "b": S, "c": R}, (), (), False),  # the join waits for both
        ({"a": S, "b": S, "c": S}, ("d",), (), False),
        ({"a": S, "b": S, "c": S, "d": S}, ("e",), (), False),
        ({"a": S, "b": S, "c": S, "d": S, "e": S}, (), (), True),
        ({"a": S, "b": F, "c": R}, (), ("d", "e"), False),  # a failure starts nothing new
        ({"a": S, "b": F, "c": S}, (), ("d", "e"), True),
        ({"a": F}, (), ("b", "c", "d", "e"), True),
        ({"a": S, "b": C, "c": S}, (), ("d",), False),  # a cancelled need blocks its dependents
        ({"a": S, "b": C, "c": S, "d": C}, (), ("e",), True),  # settled once e is cancelled
        ({"a": S, "b": C, "c": S, "d": C, "e": C}, (), (), True),
    ],
)
def test_next_steps(
    status: dict[str, StepStatus], ready: tuple[str, ...], cancel: tuple[str, ...], finished: bool
) -> None:
    """Which steps start, which never will, and whether all is settled once those are cancelled."""
    got = next_steps(DIAMOND, status)
    assert (got.ready, got.cancel, got.finished) == (ready, cancel, finished)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([("a", ["zzz"])], "step 'a': needs unknown step 'zzz'"),
        ([("a", ["a"])], "step 'a': needs itself"),
        ([("a", ["c"]), ("b", ["a"]), ("c", ["b"])], "is in a cycle: a -> c -> b -> a"),
        ([("a", None), ("b", ["c"]), ("c", None)], "is in a cycle: b -> c -> b"),
    ],
)
def test_invalid_dags_are_refused(steps: list[tuple[str, list[str] | None]], message: str) -> None:
    """Unknown needs, self needs and cycles are refused naming the step."""
    with pytest.raises(PlanError) as exc:
        build_plan(steps)
    assert message in str(exc.value)


def test_duplicate_needs_are_collapsed() -> None:
    """A need listed twice counts once."""
    assert build_plan([("a", []), ("b", ["a", "a"])]).needs["b"] == ("a",)


K = StepStatus.SKIPPED
TOLERANT = build_plan([("probe", None), ("fix", None), ("verify", None)], tolerant=["probe"])


@pytest.mark.parametrize(
    ("status", "ready", "cancel", "finished"),
    [
        ({"probe": K}, ("fix",), (), False),  # a skipped need satisfies its dependents
        ({"probe": F}, ("fix",), (), False),  # continue_on_error: a failure does not stop the run
        ({"probe": F, "fix": S}, ("verify",), (), False),
        ({"probe": F, "fix": S, "verify": S}, (), (), True),
        ({"probe": S, "fix": F}, (), ("verify",), True),  # others still stop it
    ],
)
def test_skipped_and_tolerated_failures(
    status: dict[str, StepStatus], ready: tuple[str, ...], cancel: tuple[str, ...], finished: bool
) -> None:
    """Skipped steps and continue_on_error failures let dependents run."""
    got = next_steps(TOLERANT, status)
    assert (got.ready, got.cancel, got.finished) == (ready, cancel, finished)


W = StepStatus.WAITING_APPROVAL


@pytest.mark.parametrize(
    ("status", "ready", "cancel", "finished"),
    [
        ({"a": S, "b": W}, ("c",), (), False),  # a sibling branch goes on while b waits
        ({"a": S, "b": W, "c": S}, (), (), False),  # the join waits; not finished while b waits
        ({"a": S, "b": W, "c": F}, (), ("b", "d", "e"), True),  # a failure withdraws the approval
        ({"a": S, "b": S, "c": S}, ("d",), (), False),  # approved: the join starts
    ],
)
def test_waiting_for_approval(
    status: dict[str, StepStatus], ready: tuple[str, ...], cancel: tuple[str, ...], finished: bool
) -> None:
    """A step waiting for approval holds its dependents and keeps the plan open, until a failure."""
    got = next_steps(DIAMOND, status)
    assert (got.ready, got.cancel, got.finished) == (ready, cancel, finished)
