"""Routing: rule order, continue, params and dedup templates, and rule loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.models import Alert
from receiver.rules import RouteDecision, RouteFailure, Rule, load_rules, route
from receiver.yamlsource import load_documents
from tests.support import alert


def rules_from(tmp_path: Path, text: str) -> tuple[list[Rule], list[str]]:
    f = tmp_path / "rules.yml"
    f.write_text(text)
    rules, errors = load_rules(load_documents(f)[0])
    return rules, [str(e) for e in errors]


RULES = """
rules:
  - name: first
    matchers: ['alertname="Disk"', 'severity=~"warning|critical"']
    playbook: clean
    params: {mount: "{{ alert.labels.mountpoint }}", fixed: 3}
    dedup: {key: "{{ alert.labels.instance }}", cooldown: 15m}
    on_resolved: cancel
    continue: true
  - name: second
    matchers: ['{alertname="Disk"}']
    playbook: notify
  - name: third
    matchers: ['alertname="Disk"']
    playbook: never
  - name: catch-all
    playbook: fallback
"""


def decisions(rules: list[Rule], **labels: str) -> list[RouteDecision | RouteFailure]:
    return route(Alert.model_validate(alert(**labels)), tuple(rules))


def test_first_match_wins_unless_continue(tmp_path: Path) -> None:
    """`continue: true` lets the next rule match too; the first without it stops routing."""
    rules, errors = rules_from(tmp_path, RULES)
    assert errors == []
    got = decisions(rules, name="Disk", severity="critical", mountpoint="/var", instance="n1")
    assert [d.rule for d in got] == ["first", "second"]


def test_rules_are_tried_in_order(tmp_path: Path) -> None:
    """When the first rule does not match, the next matching one in file order is taken."""
    rules, _ = rules_from(tmp_path, RULES)
    assert [d.rule for d in decisions(rules, name="Disk", severity="info")] == ["second"]
    assert [d.rule for d in decisions(rules, name="Other")] == ["catch-all"]


def test_params_and_dedup_key_are_rendered(tmp_path: Path) -> None:
    """Params and the dedup key render from the alert; numbers in YAML become strings."""
    rules, _ = rules_from(tmp_path, RULES)
    d = decisions(rules, name="Disk", severity="warning", mountpoint="/data", instance="n1")[0]
    assert isinstance(d, RouteDecision)
    assert d.params == {"mount": "/data", "fixed": "3"}
    assert (d.dedup_key, d.cooldown_s, d.on_resolved) == ("n1", 900.0, "cancel")


def test_undefined_label_in_template_is_a_route_failure(tmp_path: Path) -> None:
    """A template naming a label the alert lacks fails that rule for that alert, naming the label."""
    rules, _ = rules_from(tmp_path, RULES)
    got = decisions(rules, name="Disk", severity="warning", instance="n1")
    assert isinstance(got[0], RouteFailure)
    assert "mountpoint" in got[0].error and "first" in got[0].error
    assert got[0].playbook == rules[0].playbook  # named in reports of template errors
    assert [d.rule for d in got[1:]] == ["second"]  # continue still applies


def test_label_values_are_never_rendered_as_templates(tmp_path: Path) -> None:
    """A label value that looks like a template arrives verbatim in params."""
    rules, _ = rules_from(tmp_path, RULES)
    d = decisions(rules, name="Disk", severity="warning", mountpoint="{{ 7 * 7 }}", instance="n1")[0]
    assert isinstance(d, RouteDecision)
    assert d.params["mount"] == "{{ 7 * 7 }}"


def test_sandbox_blocks_unsafe_attribute_access(tmp_path: Path) -> None:
    """Templates run in Jinja2's sandbox: reaching Python internals fails as a route failure."""
    rules, errors = rules_from(
        tmp_path,
        'rules:\n  - name: evil\n    playbook: p\n    params: {x: "{{ alert.__class__.__mro__ }}"}\n',
    )
    assert errors == []
    got = decisions(rules, name="X")
    assert isinstance(got[0], RouteFailure)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules:\n  - name: a\n    playbok: x\n", ["rules.yml:3 (rule 'a')", "playbok: unknown key"]),
        (
            "rules:\n  - name: a\n    playbook: x\n    matchers: ['a=\"b']\n",
            ["rules.yml:4", "closing double quote"],
        ),
        ("rules:\n  - name: a\n    playbook: x\n    params: {y: '{{ oops'}\n", ["params.y", "rule 'a'"]),
        (
            "rules:\n  - name: a\n    playbook: x\n    on_resolved: retry\n",
            ["on_resolved", "'cancel' or 'ignore'"],
        ),
        (
            "rules:\n  - name: a\n    playbook: x\n    dedup: {cooldown: soon}\n",
            ["dedup.cooldown", "not a duration"],
        ),
        ("rule: []\n", ["rules: Field required"]),
    ],
)
def test_bad_rules_name_file_line_and_problem(tmp_path: Path, text: str, expected: list[str]) -> None:
    """A bad rule is reported with its file, line, rule and what is wrong."""
    _, errors = rules_from(tmp_path, text)
    assert errors, "expected an error"
    for part in expected:
        assert any(part in e for e in errors), (part, errors)


def test_good_rules_survive_a_bad_sibling(tmp_path: Path) -> None:
    """One bad rule is reported; the others in the file still load (and the config is refused later)."""
    rules, errors = rules_from(
        tmp_path, "rules:\n  - name: ok\n    playbook: p\n  - name: bad\n    playbook: p\n    nope: 1\n"
    )
    assert [r.name for r in rules] == ["ok"]
    assert len(errors) == 1
