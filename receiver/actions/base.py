"""What every action is: a parameter model checked at load, and a run that returns an outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from receiver.integrations import Integrations
from receiver.redact import redact, redact_any


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
    # The configured notifiers and integrations (Grafana, Alertmanager, Kubernetes).
    integrations: Integrations = field(default_factory=lambda: Integrations())
    # What templates see (alert, params, rule, execution, steps): for an action's default texts.
    template_context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionResult:
    """How an action ended. `ok` decides the step's status; the rest is recorded."""

    ok: bool
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    timed_out: bool = False
    # Named results later steps read as steps.<id>.outputs (an HTTP status, a silence id, ...).
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def recorded(self) -> dict[str, Any]:
        """The fields a step or rollback record keeps of this result, secrets redacted."""
        return {
            "exit_code": self.exit_code,
            "stdout": redact(self.stdout),
            "stderr": redact(self.stderr),
            "error": redact(self.error) if self.error is not None else None,
            "outputs": redact_any(dict(self.outputs)),
        }


class Action(Protocol):
    """An action: `Params` validates `with:`; `run` carries it out with rendered parameters."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """Carry out the action within timeout_s seconds."""
