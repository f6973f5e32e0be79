"""The script action with real subprocesses: argv, environment, exit codes, caps, timeouts."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from receiver.actions.base import ActionContext
from receiver.actions.script import ScriptAction, ScriptParams

CTX = ActionContext(execution_id="e1", step_id="s1", env={"ALERT_NAME": "DiskFull"}, output_limit=1024)


def alive(pid: int) -> bool:
    """Whether a process runs; a zombie (dead, not yet reaped by a PID 1 that never reaps) is dead."""
    time.sleep(0.1)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


async def run(command: list[str], *, timeout_s: float = 10, ctx: ActionContext = CTX, **with_: object):
    params = ScriptParams.model_validate({"command": command, **with_})
    return await ScriptAction().run(params, ctx, timeout_s=timeout_s)


async def test_success_records_exit_code_and_output() -> None:
    """Exit code 0 succeeds, and stdout and stderr are recorded separately."""
    r = await run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    assert (r.ok, r.exit_code, r.stdout, r.stderr, r.error) == (True, 0, "out\n", "err\n", None)


async def test_nonzero_exit_fails_with_code() -> None:
    """A non-zero exit fails the step and says which code."""
    r = await run([sys.executable, "-c", "raise SystemExit(3)"])
    assert (r.ok, r.exit_code, r.error) == (False, 3, "exit code 3")


async def test_arguments_are_never_interpreted_by_a_shell() -> None:
    """Shell metacharacters in an argument reach the program verbatim."""
    nasty = "x; touch /tmp/pwned-by-receiver-test $(id) `id` | cat"
    r = await run([sys.executable, "-c", "import sys; print(sys.argv[1])", nasty])
    assert r.stdout == nasty + "\n"
    assert not Path("/tmp/pwned-by-receiver-test").exists()


async def test_environment_is_minimal_plus_alert_and_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The child sees PATH, the alert's variables and the step's env, not the receiver's secrets."""
    monkeypatch.setenv("RECEIVER_SECRET_TOKEN", "hunter2")
    r = await run(
        [sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"],
        env={"EXTRA": "1"},
    )
    import json

    env = json.loads(r.stdout)
    assert env["ALERT_NAME"] == "DiskFull" and env["EXTRA"] == "1" and "PATH" in env
    assert "RECEIVER_SECRET_TOKEN" not in env


async def test_output_is_capped_keeping_head_and_tail() -> None:
    """Output beyond output_limit keeps its first and last halves, with a note of how much was cut."""
    r = await run([sys.executable, "-c", "print('BEGIN' + 'a' * 5000 + 'END')"])
    head, marker, tail = r.stdout.split("\n", 2)
    assert head == "BEGIN" + "a" * 507 and marker == "[3985 bytes cut]"
    assert tail.endswith("END\n") and len(tail) == 512
    small = await run(["echo", "short"])
    assert small.stdout == "short\n"


async def test_missing_executable_is_a_clear_failure() -> None:
    """A command that does not exist fails the step with the name and the reason."""
    r = await run(["/nonexistent/clean-disk"])
    assert not r.ok and r.exit_code is None
    assert r.error is not None and "/nonexistent/clean-disk" in r.error and "No such file" in r.error


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """On timeout the script and every child it started are killed: no orphan survives."""
    pidfile = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    r = await run([sys.executable, "-c", script], timeout_s=1.0)
    assert time.monotonic() - start < 6
    assert r.timed_out and not r.ok and r.error == "timed out after 1s"
    assert r.stdout == "started\n"
    assert not alive(int(pidfile.read_text()))


async def test_sigterm_ignoring_script_is_killed() -> None:
    """A script that ignores SIGTERM is SIGKILLed after the grace period."""
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('x', flush=True); time.sleep(60)"
    )
    start = time.monotonic()
    r = await run([sys.executable, "-c", script], timeout_s=0.5)
    assert r.timed_out and time.monotonic() - start < 8


async def test_own_timeout_is_shorter_than_step_timeout() -> None:
    """`with.timeout` bounds the script even when the step allows longer."""
    r = await run(["sleep", "30"], timeout_s=60, timeout="300ms")
    assert r.timed_out and r.error == "timed out after 0.3s"


async def test_background_child_holding_stdout_does_not_hang() -> None:
    """A script that exits leaving a background child on its stdout finishes; the child is killed."""
    start = time.monotonic()
    r = await run(["sh", "-c", "sleep 30 & echo done"], timeout_s=20)
    assert r.ok and r.stdout == "done\n"
    assert time.monotonic() - start < 8


@pytest.mark.parametrize(
    ("with_", "message"),
    [
        ({"command": "rm -rf /"}, "argv"),
        ({"command": []}, "at least 1"),
        ({"command": ["x"], "env": {"BAD-NAME": "1"}}, "invalid environment variable name"),
        ({"command": ["x"], "timeout": "forever"}, "not a duration"),
        ({"command": ["x"], "shell": True}, "Extra inputs"),
    ],
)
def test_bad_parameters_are_rejected(with_: dict[str, object], message: str) -> None:
    """Bad `with:` parameters are refused with a message naming the problem."""
    with pytest.raises(ValidationError) as exc:
        ScriptParams.model_validate(with_)
    assert message in str(exc.value)


@pytest.mark.parametrize("how", ["missing", "refused"])
async def test_without_pidfd_the_exit_is_polled(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """On a kernel or Python without pidfd_open (absent, or refusing with ENOSYS), exits are
    polled: a script still succeeds with its output, and a timeout still kills it."""
    import errno
    import os

    if how == "missing":
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    else:

        def refuse(pid: int, flags: int = 0) -> int:
            raise OSError(errno.ENOSYS, "pidfd_open not implemented")

        monkeypatch.setattr(os, "pidfd_open", refuse)
    r = await run([sys.executable, "-c", "import time; time.sleep(0.2); print('polled')"])
    assert (r.ok, r.exit_code, r.stdout) == (True, 0, "polled\n")
    start = time.monotonic()
    r = await run(["sleep", "30"], timeout_s=0.3)
    assert r.timed_out and time.monotonic() - start < 6
