"""The `approval` step: the execution waits, without holding a worker, until an operator approves
or rejects it through the API, or its timeout passes (which rejects it).

It is not an action that runs: the runner parks the execution on it (runner.py) and the engine
resumes the execution once it is decided (engine.py). Only its parameters live here. Pure.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from receiver.durations import parse_duration

APPROVAL = "approval"
# How long an approval waits for a decision when its step does not say.
DEFAULT_APPROVAL_TIMEOUT_S = 3600.0


class ApprovalParams(BaseModel):
    """`with:` of an approval step: what to tell the approver, and how long to wait."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = ""
    timeout: float = DEFAULT_APPROVAL_TIMEOUT_S
    notify: list[str] = Field(default_factory=list)  # notifiers told that an approval is asked

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)
