"""Loading the main config, rules and playbooks: every error names file, line and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import load_config
from receiver.errors import ConfigErrors
from tests.support import PROJECT, write_config

RULES = "rules:\n  - name: r\n    matchers: ['alertname=\"A\"']\n    playbook: p\n"
PLAYBOOK = """name: p
timeout: 1m
steps:
  - id: one
    action: script
    with: {command: ["echo", "{{ params.x | default('') }}"], timeout: 5s}
"""


def errors_for(tmp_path: Path, **kw: object) -> list[str]:
    args = {"rules": RULES, "playbooks": {"p": PLAYBOOK}, **kw}
    path = write_config(tmp_path, **args)  # type: ignore[arg-type]
    with pytest.raises(ConfigErrors) as exc:
        load_config(path)
    return [str(e) for e in exc.value.errors]


def test_shipped_config_loads() -> None:
    """The receiver.yml, rules/ and playbooks/ shipped in the repository load without error."""
    config = load_config(PROJECT / "receiver.yml")
    assert {r.playbook for r in config.rules} <= set(config.playbooks)
    assert config.store_url.startswith("sqlite:///")


def test_good_config_loads(tmp_path: Path) -> None:
    """A valid config yields its rules, playbooks and steps."""
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": PLAYBOOK}))
    assert [r.name for r in config.rules] == ["r"]
    assert config.playbooks["p"].timeout_s == 60
    assert [s.id for s in config.playbooks["p"].steps] == ["one"]


@pytest.mark.parametrize(
    ("playbook", "expected"),
    [
        (
            PLAYBOOK.replace("action: script", "action: scirpt"),
            ["p.yml:5", "unknown action 'scirpt'", "script"],
        ),
        (PLAYBOOK.replace("command: [", "comand: ["), ["p.yml:6", "step 'one'", "with.comand"]),
        (PLAYBOOK.replace("timeout: 5s", "timeout: 5 seconds"), ["with.timeout", "not a duration"]),
        (PLAYBOOK.replace("'') }}", "'') }"), ["step 'one'", "with.command[1]"]),
        (
            PLAYBOOK + "  - id: one\n    action: script\n    with: {command: [x]}\n",
            ["duplicate step id 'one'"],
        ),
        (PLAYBOOK.replace("timeout: 1m", "timout: 1m"), ["p.yml:2", "timout: unknown key"]),
        (
            PLAYBOOK.replace("  - id: one", "  - id: 'bad id'"),
            ["steps[0]", "id: String should match pattern"],
        ),
        ("name: p\nsteps: [\n", ["p.yml", "invalid YAML"]),
        (
            PLAYBOOK + "    needs: [two]\n  - id: two\n    action: script\n    with: {command: [x]}\n",
            ["p.yml:7", "step 'one': is in a cycle: one -> two -> one"],
        ),
        (
            PLAYBOOK + "    needs: [ghost]\n",
            ["p.yml:7 (playbook 'p')", "step 'one': needs unknown step 'ghost'"],
        ),
        (PLAYBOOK.replace("timeout: 1m", "max_parallel: 0"), ["max_parallel", "greater than or equal to 1"]),
        (PLAYBOOK + "    when: steps.x ==\n", ["p.yml:7", "step 'one' when"]),
        (
            PLAYBOOK + "    rollback: {action: nope}\n",
            ["p.yml:7", "step 'one' rollback", "unknown action 'nope'"],
        ),
        (
            PLAYBOOK + "    rollback: {action: script, with: {command: 'undo it'}}\n",
            ["step 'one' rollback", "with.command", "argv"],
        ),
        (
            PLAYBOOK + "    retry: {attempts: 3, backof: 1s}\n",
            ["p.yml:7", "steps[0]", "retry.backof: unknown key"],
        ),
        (
            PLAYBOOK + "  - id: ok\n    action: approval\n    with: {mesage: 'restart it?'}\n",
            ["p.yml:9", "step 'ok'", "with.mesage: unknown key"],
        ),
        (
            PLAYBOOK + "  - id: ok\n    action: approval\n    with: {timeout: soon}\n",
            ["step 'ok'", "with.timeout", "not a duration"],
        ),
        (
            PLAYBOOK + "    rollback: {action: approval}\n",
            ["p.yml:7", "step 'one' rollback", "approval can only be a step"],
        ),
        (
            PLAYBOOK + "on_failure:\n  - action: approval\n",
            ["p.yml:8", "on_failure[0]", "approval can only be a step"],
        ),
        (PLAYBOOK.replace("timeout: 1m", "lock: '{{ params.x '"), ["p.yml:2", "playbook 'p' lock"]),
        (
            PLAYBOOK.replace("timeout: 1m", "lock_policy: queue"),
            ["p.yml:2", "lock_policy", "'wait' or 'skip'"],
        ),
        (PLAYBOOK + "    idempotent: maybe\n", ["p.yml:7", "idempotent", "boolean"]),
    ],
)
def test_bad_playbooks_are_located(tmp_path: Path, playbook: str, expected: list[str]) -> None:
    """A bad playbook is refused with its file, line, step and the offending key."""
    errors = errors_for(tmp_path, playbooks={"p": playbook})
    for part in expected:
        assert any(part in e for e in errors), (part, errors)


def test_broken_playbook_gives_one_error(tmp_path: Path) -> None:
    """A playbook that fails to load is reported once, not again by each rule that names it."""
    errors = errors_for(tmp_path, playbooks={"p": PLAYBOOK.replace("action: script", "action: nope")})
    assert len(errors) == 1 and "unknown action 'nope'" in errors[0]


def test_rule_naming_unknown_playbook(tmp_path: Path) -> None:
    """A rule that names a playbook nobody defined is an error naming both."""
    errors = errors_for(tmp_path, rules=RULES.replace("playbook: p", "playbook: nope"))
    assert any("rule 'r' names unknown playbook 'nope'" in e for e in errors)


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    """Errors in several files are all listed, not just the first."""
    errors = errors_for(
        tmp_path,
        rules=RULES + "  - name: r2\n    playbook: p\n    bogus: 1\n",
        playbooks={"p": PLAYBOOK.replace("action: script", "action: nope")},
    )
    assert len(errors) >= 2
    assert any("rules.yml" in e for e in errors) and any("p.yml" in e for e in errors)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("listen: nowhere\n", "listen: Value error, expected HOST:PORT"),
        ("workers: 0\n", "workers: Input should be greater than or equal to 1"),
        (
            "auth: {webhook: {}}\n",
            "auth.webhook: Value error, give exactly one of bearer_token_file or basic",
        ),
        ("rate_limit: {}\n", "rate_limit: unknown key"),
        ("history: {retention: a week}\n", "history.retention"),
        ("reclaim_after: 1s\n", "reclaim_after: Value error, must be at least 2s"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, settings: str, expected: str) -> None:
    """A bad main-config key is named with its file and line."""
    errors = errors_for(tmp_path, settings=settings)
    assert any(expected in e and "receiver.yml:3" in e for e in errors), errors


def test_glob_matching_nothing_is_an_error(tmp_path: Path) -> None:
    """A rules glob that matches no file is reported (a typo would otherwise load no rules)."""
    path = write_config(tmp_path, rules=RULES, playbooks={"p": PLAYBOOK})
    path.write_text("rules: [rulez/*.yml]\nplaybooks: [playbooks/*.yml]\n")
    with pytest.raises(ConfigErrors) as exc:
        load_config(path)
    assert "rules: 'rulez/*.yml' matches no file" in str(exc.value)


def test_secret_and_kubeconfig_paths_are_taken_from_the_config_dir(tmp_path: Path) -> None:
    """Relative token, URL-list and kubeconfig paths are read beside the config file; absolute
    ones and ~ are kept as they are meant."""
    (tmp_path / "urls").write_text("json://127.0.0.1:9/x\n")
    settings = (
        "integrations:\n"
        "  grafana: {url: 'http://g', token_file: secrets/g}\n"
        "  alertmanager: {url: 'http://a', token_file: /run/a}\n"
        "  kubernetes: {kubeconfig: ~/.kube/config}\n"
        "notifiers: {n: {urls_file: urls}}\n"
    )
    config = load_config(write_config(tmp_path, rules=RULES, playbooks={"p": PLAYBOOK}, settings=settings))
    s = config.settings
    i = s.integrations
    assert i.grafana is not None and i.grafana.token_file == str(tmp_path / "secrets/g")
    assert i.alertmanager is not None and i.alertmanager.token_file == "/run/a"
    assert s.notifiers["n"].urls_file == str(tmp_path / "urls")
    assert i.kubernetes is not None and i.kubernetes.kubeconfig == str(Path.home() / ".kube/config")
