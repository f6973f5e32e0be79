"""Execution records: what the store keeps and the history API shows. Pure data."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from receiver.models import Alert
from receiver.states import ExecutionStatus, StepStatus


def new_execution_id(now: float) -> str:
    """A 22-hex-digit id whose first 12 digits are the creation time in ms: ids sort by time."""
    return f"{int(now * 1000):012x}{secrets.token_hex(5)}"


def id_time_bound(t: float) -> str:
    """The id prefix of time `t`: every id created at or after `t` sorts at or after it."""
    return f"{int(t * 1000):012x}"


def iso(t: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC, or None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Timeline events that start (or resume) an execution's run, and those that pause or end it.
RUN_STARTS = frozenset({"running", "resumed"})
RUN_PAUSES = frozenset(
    {ExecutionStatus.WAITING_APPROVAL.value, *(s.value for s in ExecutionStatus if s.terminal)}
)


class TimelineEvent(BaseModel):
    """One thing that happened to an execution, with its time (epoch seconds)."""

    model_config = ConfigDict(frozen=True)

    at: float
    event: str
    step: str | None = None
    detail: str | None = None


class RollbackRecord(BaseModel):
    """The outcome of a step's compensating action."""

    model_config = ConfigDict(frozen=True)

    action: str
    status: StepStatus = StepStatus.RUNNING
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)


class StepRecord(BaseModel):
    """The outcome so far of one step: timing, exit code, capped output."""

    model_config = ConfigDict(frozen=True)

    id: str
    action: str
    status: StepStatus = StepStatus.PENDING
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    timed_out: bool = False
    outputs: dict[str, Any] = Field(default_factory=dict)
    rollback: RollbackRecord | None = None


_STEPS = TypeAdapter(list[StepRecord])


def encode_steps(steps: list[StepRecord]) -> str:
    """Step records as the JSON the stores keep (encoded by pydantic, without a dict per record)."""
    return _STEPS.dump_json(steps).decode()


def decode_steps(raw: str | bytes) -> list[StepRecord]:
    return _STEPS.validate_json(raw)


class Verdict(StrEnum):
    """How an approval step was decided."""

    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"  # nobody decided before the step's timeout: counts as a rejection


class Decision(BaseModel):
    """An operator's answer to an approval (or the clock's, when it expired)."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    by: str
    at: float
    comment: str = ""

    def describe(self) -> str:
        """One line for the step record and the timeline."""
        if self.verdict is Verdict.EXPIRED:
            return "expired: nobody decided before its timeout"
        said = f": {self.comment}" if self.comment else ""
        return f"{self.verdict.value} by {self.by}{said}"


class Approval(BaseModel):
    """The approval an execution waits for (or last waited for), and its decision once made."""

    model_config = ConfigDict(frozen=True)

    step: str
    message: str = ""
    requested_at: float
    deadline: float
    decision: Decision | None = None


class ExecutionMeta(BaseModel):
    """The parts of an execution fixed when it is admitted."""

    model_config = ConfigDict(frozen=True)

    id: str
    rule: str
    playbook: str
    params: dict[str, str]
    dedup_key: str
    on_resolved: str
    alert: Alert
    created_at: float
    receiver: str = ""
    group_key: str = ""
    retry_of: str | None = None  # the execution an operator retried to create this one
    lock: str = ""  # the playbook's rendered lock name; empty when it has none
    lock_policy: str = "wait"
    # The version of the playbook admitted (Playbook.version): it runs that one even after a
    # reload changed the playbook. Empty in records made before versions existed.
    playbook_version: str = ""


class Execution(BaseModel):
    """An execution as the store returns it: its meta, state, steps and timeline."""

    model_config = ConfigDict(frozen=True)

    meta: ExecutionMeta
    status: ExecutionStatus
    started_at: float | None = None
    finished_at: float | None = None
    resolved_at: float | None = None
    error: str | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    timeline: list[TimelineEvent] = Field(default_factory=list)
    approval: Approval | None = None

    @property
    def id(self) -> str:
        """The execution id."""
        return self.meta.id

    def run_time(self, now: float) -> float:
        """Seconds this execution has spent running so far, across every resume.

        Time spent waiting for an approval does not count against the playbook's timeout; time a
        crashed worker held it does, as the playbook's clock kept going.
        """
        total = 0.0
        since: float | None = None
        for e in self.timeline:
            if e.event in RUN_STARTS and since is None:
                since = e.at
            elif e.event in RUN_PAUSES and since is not None:
                total += e.at - since
                since = None
        if since is not None:
            total += now - since
        return max(0.0, total)

    def recovered_after_s(self) -> float | None:
        """Seconds from the remediation's start to the alert resolving, if it resolved after."""
        if self.resolved_at is None or self.started_at is None or self.resolved_at < self.started_at:
            return None
        return round(self.resolved_at - self.started_at, 3)

    def summary(self, base_url: str = "") -> dict[str, Any]:
        """The JSON shape of one row of the history list."""
        a = self.meta.alert
        duration = None
        if self.started_at is not None and self.finished_at is not None:
            duration = round(self.finished_at - self.started_at, 3)
        return {
            "id": self.id,
            "url": f"{base_url}/api/v1/executions/{self.id}",
            "status": self.status.value,
            "rule": self.meta.rule,
            "playbook": self.meta.playbook,
            "playbook_version": self.meta.playbook_version,
            "alertname": a.name,
            "fingerprint": a.fingerprint,
            "created_at": iso(self.meta.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_s": duration,
            "resolved_at": iso(self.resolved_at),
            "recovered": self.recovered_after_s() is not None,
            "recovered_after_s": self.recovered_after_s(),
            "error": self.error,
        }

    def detail(self, base_url: str = "") -> dict[str, Any]:
        """The JSON shape of one execution in full: alert, params, steps and timeline."""
        out = self.summary(base_url)
        out["alert"] = self.meta.alert.context()
        out["params"] = self.meta.params
        out["dedup_key"] = self.meta.dedup_key
        out["on_resolved"] = self.meta.on_resolved
        out["receiver"] = self.meta.receiver
        out["group_key"] = self.meta.group_key
        out["retry_of"] = self.meta.retry_of
        out["approval"] = _approval_json(self.approval)
        out["steps"] = [
            {
                **s.model_dump(mode="json", exclude={"started_at", "finished_at", "rollback"}),
                "rollback": _rollback_json(s.rollback),
                "status": s.status.value,
                "started_at": iso(s.started_at),
                "finished_at": iso(s.finished_at),
                "duration_s": (
                    round(s.finished_at - s.started_at, 3)
                    if s.started_at is not None and s.finished_at is not None
                    else None
                ),
            }
            for s in self.steps
        ]
        out["timeline"] = [{**e.model_dump(exclude_none=True), "at": iso(e.at)} for e in self.timeline]
        return out


def _rollback_json(r: RollbackRecord | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        **r.model_dump(mode="json", exclude={"started_at", "finished_at"}),
        "started_at": iso(r.started_at),
        "finished_at": iso(r.finished_at),
    }


def _approval_json(a: Approval | None) -> dict[str, Any] | None:
    if a is None:
        return None
    d = a.decision
    return {
        "step": a.step,
        "message": a.message,
        "requested_at": iso(a.requested_at),
        "deadline": iso(a.deadline),
        "decision": None
        if d is None
        else {"verdict": d.verdict.value, "by": d.by, "at": iso(d.at), "comment": d.comment},
    }
