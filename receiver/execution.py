"""Execution records: what the store keeps and the history API shows. Pure data."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
    rollback: RollbackRecord | None = None


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

    @property
    def id(self) -> str:
        """The execution id."""
        return self.meta.id

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
