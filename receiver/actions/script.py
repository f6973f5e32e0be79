"""The `script` action: run an argv list (never a shell string) in its own process group.

A timeout kills the whole group (SIGTERM, then SIGKILL after a grace period), so nothing the
script started outlives it. stdout and stderr are read as they come; the head and the tail are
kept, up to a cap, and what fell between is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from receiver.actions.base import ActionContext, ActionResult
from receiver.durations import parse_duration

# After SIGTERM, how long a process group gets to exit before SIGKILL.
KILL_GRACE_S = 2.0
# Variables of the receiver's own environment a script inherits; nothing else leaks in (the
# receiver's environment may hold secrets).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ScriptParams(BaseModel):
    """`with:` of a script step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    timeout: float | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)

    @field_validator("env")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.match(_ENV_NAME, name):
                raise ValueError(f"invalid environment variable name {name!r}")
        return v

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise ValueError("command must be a list of arguments (argv), not a shell string")
        return v


class _Capture:
    """Keeps the first and the last `limit // 2` bytes of a stream, and counts what fell between."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.cut = 0

    def feed(self, chunk: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > self.tail_limit:
            drop = len(self.tail) - self.tail_limit
            self.cut += drop
            del self.tail[:drop]

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        return f"{head}\n[{self.cut} bytes cut]\n{tail}" if self.cut else head + tail


async def _drain(stream: asyncio.StreamReader | None, tail: _Capture) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        tail.feed(chunk)


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Return once the process itself has exited.

    Python 3.11's Process.wait() also waits for the pipes to close, which a background child
    holding stdout can delay forever; returncode is set as soon as the exit is seen. A pidfd
    (Linux) says at once when the process exits; then the child watcher sets returncode within a
    moment. Without pidfd, returncode is polled.
    """
    if proc.returncode is None:
        await _pidfd_readable(proc.pid)
    delay = 0.0005
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)


async def _pidfd_readable(pid: int) -> None:
    """Wait until the process `pid` has exited, through a pidfd; return at once if unavailable."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or the process is already gone
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    try:
        loop.add_reader(fd, readable)
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def use_pidfd_child_watcher() -> None:
    """On Python 3.11, learn of child exits through pidfds instead of a thread per child.

    3.11's default child watcher starts a thread for each subprocess to block in waitpid; with
    pidfds the event loop itself sees the exit. 3.12 and later choose pidfds themselves. Call it
    before the event loop starts.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel before 5.3, or a sandbox that forbids it
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after the grace period, and reap the leader."""
    _kill_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_exited(proc), KILL_GRACE_S)
    # Children may ignore SIGTERM or outlive the leader: the group gets SIGKILL regardless.
    _kill_group(proc.pid, signal.SIGKILL)
    await _exited(proc)


async def _collect(proc: asyncio.subprocess.Process, readers: asyncio.Future[Any]) -> None:
    """Read what is left in the pipes after the process exited.

    A background child that keeps them open past the grace period is killed with the rest of the
    group (and one that escaped the group with setsid is cut off).
    """
    try:
        await asyncio.wait_for(asyncio.shield(readers), KILL_GRACE_S)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGKILL)
        readers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await readers


def _close(proc: asyncio.subprocess.Process) -> None:
    """Close the subprocess transport now.

    Python 3.11 has no public way to do it, and the pipes would close only on a later loop
    iteration, so a file descriptor could outlive the step.
    """
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


def child_env(params: ScriptParams, ctx: ActionContext, base: Mapping[str, str]) -> dict[str, str]:
    """The script's environment: a few inherited variables, the alert's, then the step's own."""
    env = {k: base[k] for k in INHERITED_ENV if k in base}
    env.update(ctx.env)
    env.update(params.env)
    return env


class ScriptAction:
    """Runs a command as a child process group."""

    name: ClassVar[str] = "script"
    Params: ClassVar[type[BaseModel]] = ScriptParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """Run the command; fail on a non-zero exit, a missing executable or the timeout."""
        assert isinstance(params, ScriptParams)
        limit = min(timeout_s, params.timeout) if params.timeout is not None else timeout_s
        try:
            proc = await asyncio.create_subprocess_exec(
                *params.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(params, ctx, os.environ),
                cwd=params.cwd,
                start_new_session=True,
            )
        except OSError as e:
            return ActionResult(ok=False, error=f"cannot start {params.command[0]!r}: {e.strerror or e}")
        out, err = _Capture(ctx.output_limit), _Capture(ctx.output_limit)
        readers = asyncio.gather(_drain(proc.stdout, out), _drain(proc.stderr, err))
        timed_out = False
        try:
            try:
                await asyncio.wait_for(_exited(proc), limit)
            except TimeoutError:
                timed_out = True
                await _terminate(proc)
            await _collect(proc, readers)
        except asyncio.CancelledError:
            await _terminate(proc)
            readers.cancel()
            raise
        finally:
            _close(proc)
        code = proc.returncode
        if timed_out:
            return ActionResult(
                ok=False,
                exit_code=code,
                stdout=out.text(),
                stderr=err.text(),
                error=f"timed out after {limit:g}s",
                timed_out=True,
            )
        return ActionResult(
            ok=code == 0,
            exit_code=code,
            stdout=out.text(),
            stderr=err.text(),
            error=None if code == 0 else f"exit code {code}",
        )
