"""The step DAG of a playbook and what may run next. Pure: plain data in, decisions out.

A step's `needs` lists the steps that must succeed before it starts. A step without `needs`
follows the step before it in the file, so a playbook that never says `needs` runs in file order;
`needs: []` starts a step at once, beside the others. A skipped step (its `when` was false)
satisfies the steps that need it, and so does a failed one marked `continue_on_error`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from receiver.states import StepStatus


class PlanError(ValueError):
    """The steps do not form a DAG: an unknown need, a step needing itself, or a cycle."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        super().__init__(f"step {step!r}: {message}")


@dataclass(frozen=True)
class Plan:
    """Steps in file order and, for each, the steps it needs."""

    order: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]]
    tolerant: frozenset[str] = frozenset()  # steps whose failure does not stop the run


@dataclass(frozen=True)
class Next:
    """What to do now: steps to start, steps that will never run, and whether all is settled."""

    ready: tuple[str, ...]
    cancel: tuple[str, ...]
    finished: bool


def build_plan(steps: Sequence[tuple[str, Sequence[str] | None]], *, tolerant: Collection[str] = ()) -> Plan:
    """Resolve each step's needs (None: the previous step) and check that they form a DAG.

    `tolerant` names the steps marked continue_on_error.
    """
    ids = [s for s, _ in steps]
    known = set(ids)
    needs: dict[str, tuple[str, ...]] = {}
    for i, (step, declared) in enumerate(steps):
        if declared is None:
            needs[step] = (ids[i - 1],) if i > 0 else ()
            continue
        for n in declared:
            if n == step:
                raise PlanError(step, "needs itself")
            if n not in known:
                raise PlanError(step, f"needs unknown step {n!r}")
        needs[step] = tuple(dict.fromkeys(declared))
    _check_acyclic(ids, needs)
    return Plan(order=tuple(ids), needs=needs, tolerant=frozenset(tolerant))


def _check_acyclic(ids: list[str], needs: Mapping[str, tuple[str, ...]]) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(step: str, path: list[str]) -> None:
        if state.get(step) == 2:
            return
        if state.get(step) == 1:
            cycle = [*path[path.index(step) :], step]
            raise PlanError(step, "is in a cycle: " + " -> ".join(cycle))
        state[step] = 1
        for n in needs[step]:
            visit(n, [*path, step])
        state[step] = 2

    for step in ids:
        visit(step, [])


def next_steps(plan: Plan, status: Mapping[str, StepStatus]) -> Next:
    """Decide from the steps' statuses which start now and which will never run.

    Once any step has failed (and is not continue_on_error), no new step starts: the pending ones
    and any waiting for approval are cancelled while running ones finish. Otherwise a pending step
    starts when all its needs are done: succeeded, skipped, or failed with continue_on_error. A
    step waiting for approval is neither running nor done: the plan is not finished while it waits.
    """

    def state(step: str) -> StepStatus:
        return status.get(step, StepStatus.PENDING)

    def done(step: str) -> bool:
        s = state(step)
        return s in (StepStatus.SUCCEEDED, StepStatus.SKIPPED) or (
            s is StepStatus.FAILED and step in plan.tolerant
        )

    pending = [s for s in plan.order if state(s) is StepStatus.PENDING]
    running = any(state(s) is StepStatus.RUNNING for s in plan.order)
    awaiting = [s for s in plan.order if state(s) is StepStatus.WAITING_APPROVAL]
    if any(state(s) is StepStatus.FAILED and s not in plan.tolerant for s in plan.order):
        stop = [s for s in plan.order if s in pending or s in awaiting]
        return Next(ready=(), cancel=tuple(stop), finished=not running)
    ready: list[str] = []
    cancel: list[str] = []
    for s in pending:
        needs = plan.needs[s]
        if any(state(n) is StepStatus.CANCELLED for n in needs):
            cancel.append(s)
        elif all(done(n) for n in needs):
            ready.append(s)
    waiting = len(pending) - len(ready) - len(cancel)
    finished = not running and not ready and not waiting and not awaiting
    return Next(ready=tuple(ready), cancel=tuple(cancel), finished=finished)
