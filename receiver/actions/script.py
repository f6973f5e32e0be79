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
import subprocess
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


class _PipeReader:
    """Reads a non-blocking pipe from the event loop's own callbacks into a capture, until EOF.

    No transport, protocol or task per stream: a step's process costs the loop a few callbacks.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, capture: _Capture) -> None:
        self.loop = loop
        self.fd = fd
        self.capture = capture
        self.eof: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.capture.feed(chunk)
        else:
            self.close()

    def close(self) -> None:
        """Stop reading (at EOF, or to cut off a writer that outlived the step)."""
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
        if not self.eof.done():
            self.eof.set_result(None)


def _spawn(params: ScriptParams, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int, int]:
    """Start the command in a new session (its own process group) with stdout and stderr on
    pipes; the read ends are returned. Raises OSError when it cannot start."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = subprocess.Popen(
            params.command,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            env=env,
            cwd=params.cwd,
            start_new_session=True,
        )
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)  # the child holds its copies; EOF comes when it and its children close them
        os.close(err_w)
    return proc, out_r, err_r


async def _exited(proc: subprocess.Popen[bytes]) -> None:
    """Return once the process itself has exited, and reap it.

    Its pipes may stay open longer (a background child holding stdout); that does not delay this.
    A pidfd (Linux 5.3+) wakes the loop at the exit; without one, the exit is polled.
    """
    if proc.poll() is not None:
        return
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await done
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        proc.wait()  # it has exited: this only reaps it
        return
    delay = 0.0005
    while proc.poll() is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


async def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after the grace period, and reap the leader."""
    _kill_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_S):
            await _exited(proc)
    # Children may ignore SIGTERM or outlive the leader: the group gets SIGKILL regardless.
    _kill_group(proc.pid, signal.SIGKILL)
    await _exited(proc)


async def _collect(proc: subprocess.Popen[bytes], readers: list[_PipeReader]) -> None:
    """Read what is left in the pipes after the process exited.

    A background child that keeps them open past the grace period is killed with the rest of the
    group (and one that escaped the group with setsid is cut off).
    """
    pending = [r.eof for r in readers if not r.eof.done()]
    if not pending:
        return
    try:
        async with asyncio.timeout(KILL_GRACE_S):
            await asyncio.gather(*pending)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGKILL)


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
            proc, out_fd, err_fd = _spawn(params, child_env(params, ctx, os.environ))
        except OSError as e:
            return ActionResult(ok=False, error=f"cannot start {params.command[0]!r}: {e.strerror or e}")
        loop = asyncio.get_running_loop()
        out, err = _Capture(ctx.output_limit), _Capture(ctx.output_limit)
        readers = [_PipeReader(loop, out_fd, out), _PipeReader(loop, err_fd, err)]
        timed_out = False
        try:
            try:
                async with asyncio.timeout(limit):
                    await _exited(proc)
            except TimeoutError:
                timed_out = True
                await _terminate(proc)
            await _collect(proc, readers)
        except asyncio.CancelledError:
            await _terminate(proc)
            raise
        finally:
            for reader in readers:
                reader.close()
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
