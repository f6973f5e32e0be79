"""Service restarts on the host: `systemd.restart` (then checks the unit is active) and
`docker.restart`. Both run their tool with an argv list, never a shell string, through the
script action (process group, timeout, capped output)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from receiver.actions.base import ActionContext, ActionResult
from receiver.actions.script import ScriptAction, ScriptParams

# A systemd unit or Docker container name: no option-looking or shell-special text.
_NAME = r"^(\{\{.*\}\}|[A-Za-z0-9_.@:\\][A-Za-z0-9_.@:\\-]*)$"
_script = ScriptAction()


async def _run(argv: list[str], ctx: ActionContext, timeout_s: float) -> ActionResult:
    return await _script.run(ScriptParams(command=argv), ctx, timeout_s=timeout_s)


class SystemdParams(BaseModel):
    """`with:` of a systemd.restart step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: str = Field(pattern=_NAME)
    user: bool = False  # the user's service manager (systemctl --user)
    check: bool = True  # afterwards, require `systemctl is-active` to say active


class SystemdRestartAction:
    """`systemctl restart UNIT`, then `systemctl is-active UNIT`."""

    name: ClassVar[str] = "systemd.restart"
    Params: ClassVar[type[BaseModel]] = SystemdParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """Restart, then check; outputs.state is what is-active said."""
        assert isinstance(params, SystemdParams)
        base = ["systemctl", *(["--user"] if params.user else [])]
        restarted = await _run([*base, "restart", "--", params.unit], ctx, timeout_s)
        if not restarted.ok or not params.check:
            return restarted
        checked = await _run([*base, "is-active", "--", params.unit], ctx, timeout_s)
        state = checked.stdout.strip()
        if state != "active":
            return ActionResult(
                ok=False,
                exit_code=checked.exit_code,
                stdout=restarted.stdout + checked.stdout,
                stderr=restarted.stderr + checked.stderr,
                error=f"unit {params.unit} is {state or 'in an unknown state'} after the restart",
                outputs={"state": state},
            )
        return ActionResult(
            ok=True, exit_code=0, stdout=restarted.stdout + checked.stdout, outputs={"state": state}
        )


class DockerParams(BaseModel):
    """`with:` of a docker.restart step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    container: str = Field(pattern=_NAME)


class DockerRestartAction:
    """`docker restart CONTAINER`."""

    name: ClassVar[str] = "docker.restart"
    Params: ClassVar[type[BaseModel]] = DockerParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """Restart the container."""
        assert isinstance(params, DockerParams)
        return await _run(["docker", "restart", "--", params.container], ctx, timeout_s)
