"""What every action is: a parameter model checked at load, and a run that returns an outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel


@dataclass(frozen=True)
class ActionContext:
    """What an action may know about the execution it runs in."""

    execution_id: str
    step_id: str
    # Environment variables describing the alert and the execution (names already safe).
    env: Mapping[str, str] = field(default_factory=dict)
    output_limit: int = 16384
    # Whether Alertmanager has reported this execution's alert resolved (reads the store).
    alert_resolved: Callable[[], Awaitable[bool]] | None = None


@dataclass(frozen=True)
class ActionResult:
    """How an action ended. `ok` decides the step's status; the rest is recorded."""

    ok: bool
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    timed_out: bool = False

    def recorded(self) -> dict[str, Any]:
        """The fields a step or rollback record keeps of this result."""
        return {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "error": self.error,
        }


class Action(Protocol):
    """An action: `Params` validates `with:`; `run` carries it out with rendered parameters."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """Carry out the action within timeout_s seconds."""
