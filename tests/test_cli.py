"""The command line: `check` and `serve` refuse a bad config with file, line and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "ok: 3 rule(s), 3 playbook(s)" in r.stdout


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


@pytest.mark.parametrize(
    ("command", "code"), [(("serve", "--listen", "127.0.0.1:1"), 1), (("route-test", "alertname=A"), 2)]
)
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://db", "store: unsupported store URL 'mysql://db'"),
        ("redis+sentinel://h:port/svc", "store: Sentinel 'h:port': the port must be a number"),
        ("redis+sentinel://h:26379", "store: name the Sentinel service"),
        ("redis+sentinel://h:26379/svc/db", "store: after the service name, only a database number"),
    ],
)
def test_bad_store_url_is_refused_naming_it(command: tuple[str, ...], code: int, url: str, says: str) -> None:
    """A store URL the receiver cannot use stops `serve` and `route-test` with a message naming
    what is wrong (before, a bad Sentinel port silently became 26379, and the rest tracebacks)."""
    r = receiver(command[0], "--config", "receiver.yml", "--store", url, *command[1:])
    assert r.returncode == code, r.stderr
    assert says in r.stderr
    assert "Traceback" not in r.stderr


def test_listen_override_is_validated() -> None:
    """`serve --listen` with a malformed address is refused naming the key."""
    r = receiver("serve", "--config", "receiver.yml", "--listen", "nowhere")
    assert r.returncode == 1 and "listen: Value error, expected HOST:PORT" in r.stderr


DISK_ALERT = (
    '{"status": "firing", "startsAt": "2026-11-24T10:00:00Z", "labels": {"alertname":'
    ' "NodeFilesystemSpaceFillingUp", "severity": "SEVERITY", "instance": "node-1", "mountpoint": "/"}}'
)


def test_run_dry_run_shows_the_plan(tmp_path: Path) -> None:
    """`run --dry-run` renders params, needs and conditions without running anything."""
    alert_file = tmp_path / "alert.json"
    alert_file.write_text(DISK_ALERT.replace("SEVERITY", "warning"))
    r = receiver("run", "disk-diagnose", "--config", "receiver.yml", "--alert", str(alert_file), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert 'rule disk-filling-up, params {"mountpoint": "/", "instance": "node-1"}' in r.stdout
    assert 'with: {"command": ["df", "-h", "/"], "timeout": "30s"}' in r.stdout
    assert "largest [script] needs: usage; skips" in r.stdout
    assert "note: skipped: `alert.labels.severity == 'critical'` is false" in r.stdout
    assert (
        "summary [script] needs: usage, inodes; runs\n    note: parameters use earlier steps' output"
        in r.stdout
    )


def test_run_executes_here_and_prints_the_record(tmp_path: Path) -> None:
    """`run` without --dry-run runs the playbook in-process and prints the execution as JSON."""
    import json

    r = receiver(
        "run",
        "demo-report",
        "--config",
        "receiver.yml",
        "--alert",
        "tests/fixtures/alertmanager-0.25/firing_group.json",
        "--param",
        "target=broken",
    )
    assert r.returncode == 2  # not succeeded
    record = json.loads(r.stdout)
    assert record["status"] == "rolled_back"
    assert record["steps"][0]["rollback"]["stdout"] == "undo report for broken\n"


def test_run_names_bad_input(tmp_path: Path) -> None:
    """An unknown playbook or an unreadable alert file is named, exit 1."""
    r = receiver("run", "nope", "--config", "receiver.yml", "--alert", "x.json", "--dry-run")
    assert r.returncode == 1 and "no playbook 'nope'" in r.stderr
    r = receiver("run", "demo-report", "--config", "receiver.yml", "--alert", str(tmp_path / "missing.json"))
    assert r.returncode == 1 and "missing.json" in r.stderr


APPROVAL_PLAYBOOK = """name: p
steps:
  - id: ask
    action: approval
    with: {message: "go?"}
  - id: act
    action: script
    with: {command: ["echo", "acted"]}
"""


def test_run_stops_at_an_approval_unless_told_to_approve(tmp_path: Path) -> None:
    """`run` stops at an approval step (exit 2, waiting_approval); `--approve` approves it and the
    run goes on to the end."""
    import json

    path = write_config(tmp_path, rules=RULES, playbooks={"p": APPROVAL_PLAYBOOK})
    fixture = str(PROJECT / "tests/fixtures/alertmanager-0.25/firing_group.json")
    r = receiver("run", "p", "--config", str(path), "--alert", fixture)
    assert r.returncode == 2, r.stderr
    record = json.loads(r.stdout)
    assert record["status"] == "waiting_approval" and record["approval"]["message"] == "go?"
    r = receiver("run", "p", "--config", str(path), "--alert", fixture, "--approve")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["status"] == "succeeded" and record["steps"][1]["stdout"] == "acted\n"
    assert record["approval"]["decision"]["by"] == "receiver run --approve"
