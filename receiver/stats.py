"""Reports: how each rule and playbook did over a period. Pure: executions and counts in, JSON out.

An execution that ended (not cancelled) is *decided*: the success rate is the share of decided
executions that succeeded, the recovery rate the share whose alert resolved after the
remediation started. Suppressed alerts leave no execution behind, so the engine counts them by
(rule, playbook, reason) in the store (engine.py) and those counts come in here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from receiver.execution import Execution
from receiver.states import ExecutionStatus, StepStatus

# Failure reasons listed per rule and playbook, most frequent first.
TOP_FAILURES = 5
# Step errors are cut to this many characters so that similar failures group together.
REASON_CHARS = 200

SuppressedKey = tuple[str, str, str]  # (rule, playbook, reason); rule "" for unrouted alerts


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation, as numpy's default; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 3)


def failure_reason(e: Execution) -> tuple[str | None, str]:
    """The step that failed first (or None) and why, for a failed execution."""
    failed = [s for s in e.steps if s.status is StepStatus.FAILED]
    if failed:
        step = min(failed, key=lambda s: s.finished_at or 0.0)
        if step.error:
            why = step.error
        elif step.timed_out:
            why = "timed out"
        elif step.exit_code is not None:
            why = f"exit code {step.exit_code}"
        else:
            why = "failed"
        return step.id, why[:REASON_CHARS]
    return None, (e.error or e.status.value)[:REASON_CHARS]


@dataclass
class Tally:
    """The figures of one rule, one playbook, or everything."""

    outcomes: Counter[str] = field(default_factory=Counter)
    recovered_after: list[float] = field(default_factory=list)
    failures: Counter[tuple[str | None, str]] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)

    def add(self, e: Execution) -> None:
        self.outcomes[e.status.value] += 1
        if e.status.terminal and e.status is not ExecutionStatus.CANCELLED:
            after = e.recovered_after_s()
            if after is not None:
                self.recovered_after.append(after)
            if e.status is not ExecutionStatus.SUCCEEDED:
                self.failures[failure_reason(e)] += 1

    def as_json(self) -> dict[str, Any]:
        decided = sum(n for s, n in self.outcomes.items() if _decided(s))
        return {
            "executions": sum(self.outcomes.values()),
            "outcomes": dict(sorted(self.outcomes.items())),
            "success_rate": _rate(self.outcomes[ExecutionStatus.SUCCEEDED.value], decided),
            "recovery_rate": _rate(len(self.recovered_after), decided),
            "time_to_recover_s": {
                "p50": percentile(self.recovered_after, 0.5),
                "p90": percentile(self.recovered_after, 0.9),
            },
            "suppressed": dict(sorted(self.suppressed.items())),
            "top_failures": [
                {"step": step, "error": why, "count": n}
                for (step, why), n in sorted(
                    self.failures.items(), key=lambda kv: (-kv[1], kv[0][0] or "", kv[0][1])
                )[:TOP_FAILURES]
            ],
        }


def _decided(status: str) -> bool:
    s = ExecutionStatus(status)
    return s.terminal and s is not ExecutionStatus.CANCELLED


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class Report:
    """The report built one execution at a time, so no more than one page of them is held."""

    def __init__(self) -> None:
        self.total = Tally()
        self.rules: dict[str, Tally] = {}
        self.playbooks: dict[str, Tally] = {}
        self.rule_playbooks: dict[str, set[str]] = {}
        self.unrouted = 0

    def add(self, e: Execution) -> None:
        for t in (
            self.total,
            self.rules.setdefault(e.meta.rule, Tally()),
            self.playbooks.setdefault(e.meta.playbook, Tally()),
        ):
            t.add(e)
        self.rule_playbooks.setdefault(e.meta.rule, set()).add(e.meta.playbook)

    def add_suppressed(self, suppressed: Mapping[SuppressedKey, int]) -> None:
        for (rule, playbook, reason), n in suppressed.items():
            if not rule:
                self.unrouted += n
                continue
            for t in (
                self.total,
                self.rules.setdefault(rule, Tally()),
                self.playbooks.setdefault(playbook, Tally()),
            ):
                t.suppressed[reason] += n
            self.rule_playbooks.setdefault(rule, set()).add(playbook)

    def as_json(self) -> dict[str, Any]:
        """Totals, then one entry per rule and per playbook (by name), and the unrouted count."""
        return {
            "totals": self.total.as_json(),
            "rules": [
                {"rule": name, "playbooks": sorted(self.rule_playbooks.get(name, ())), **t.as_json()}
                for name, t in sorted(self.rules.items())
            ],
            "playbooks": [{"playbook": name, **t.as_json()} for name, t in sorted(self.playbooks.items())],
            "unrouted": self.unrouted,
        }


def report(executions: Iterable[Execution], suppressed: Mapping[SuppressedKey, int]) -> dict[str, Any]:
    """The report of these executions and suppressed counts (see Report)."""
    r = Report()
    for e in executions:
        r.add(e)
    r.add_suppressed(suppressed)
    return r.as_json()
