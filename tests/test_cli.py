"""The command line: `check` and `serve` refuse a bad config with file, line and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import PROJECT, write_config

BAD_PLAYBOOK = "name: p\nsteps:\n  - id: s\n    action: script\n    with: {command: rm -rf /}\n"
RULES = "rules:\n  - name: r\n    playbook: p\n"


def receiver(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args], capture_output=True, text=True, timeout=30, cwd=PROJECT
    )


def test_check_accepts_shipped_config() -> None:
    """`receiver check` on the shipped config exits 0 and says what it loaded."""
    r = receiver("check", "--config", "receiver.yml")
    assert r.returncode == 0, r.stderr
    assert "ok: 2 rule(s), 2 playbook(s)" in r.stdout


def test_check_reports_bad_playbook(tmp_path: Path) -> None:
    """`receiver check` exits 1 naming the file, line, step and parameter."""
    path = write_config(tmp_path, rules=RULES, playbooks={"p": BAD_PLAYBOOK})
    r = receiver("check", "--config", str(path))
    assert r.returncode == 1
    assert "p.yml:5 (playbook 'p' step 's'): with.command" in r.stderr
    assert "argv" in r.stderr


def test_serve_refuses_bad_config_without_traceback(tmp_path: Path) -> None:
    """`receiver serve` with a bad rules file exits non-zero before listening, with no traceback."""
    path = write_config(
        tmp_path,
        rules="rules:\n  - name: r\n    playbook: p\n    matchers: ['a=~\"(\"']\n",
        playbooks={"p": BAD_PLAYBOOK.replace("rm -rf /", "[x]")},
    )
    r = receiver("serve", "--config", str(path))
    assert r.returncode == 1
    assert "rules.yml:4 (rule 'r'): invalid regex" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    """A config path that does not exist is reported by name."""
    r = receiver("check", "--config", str(tmp_path / "nope.yml"))
    assert r.returncode == 1 and "nope.yml" in r.stderr and "cannot read file" in r.stderr


def test_listen_override_is_validated() -> None:
    """`serve --listen` with a malformed address is refused naming the key."""
    r = receiver("serve", "--config", "receiver.yml", "--listen", "nowhere")
    assert r.returncode == 1 and "listen: Value error, expected HOST:PORT" in r.stderr
