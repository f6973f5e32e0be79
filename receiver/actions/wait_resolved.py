"""The `wait_resolved` action: succeeds once Alertmanager reports the alert resolved.

The resolved notification arrives at /webhook like any other and is recorded on the execution;
this action watches for that record, so it works whichever replica received the notification.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from receiver.actions.base import ActionContext, ActionResult
from receiver.durations import parse_duration

# How often the execution record is read while waiting.
POLL_S = 1.0


class WaitResolvedParams(BaseModel):
    """`with:` of a wait_resolved step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)


class WaitResolvedAction:
    """Waits for the triggering alert's resolution; fails when the time is up."""

    name: ClassVar[str] = "wait_resolved"
    Params: ClassVar[type[BaseModel]] = WaitResolvedParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """Poll the execution's record until the alert is resolved or the timeout passes."""
        assert isinstance(params, WaitResolvedParams)
        if ctx.alert_resolved is None:
            return ActionResult(ok=False, error="wait_resolved needs the execution's record")
        limit = min(timeout_s, params.timeout) if params.timeout is not None else timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            if await ctx.alert_resolved():
                return ActionResult(ok=True, stdout="alert resolved\n")
            left = deadline - loop.time()
            if left <= 0:
                return ActionResult(ok=False, error=f"alert still firing after {limit:g}s", timed_out=True)
            await asyncio.sleep(min(POLL_S, left))
