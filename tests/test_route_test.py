"""`receiver route-test`: which rules an alert matches, in order, what each would run, and whether
admission would suppress it now; checked against what the engine itself does with the same alerts."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from receiver.config import Config, load_config
from receiver.engine import Engine
from receiver.metrics import Metrics
from receiver.models import Alert, parse_payload
from receiver.routetest import StoreState, explain, read_state, verdict
from receiver.store.base import Store
from tests.support import PROJECT, alert, payload, write_config

RULES = """rules:
  - name: disk
    matchers: ['alertname="DiskFull"', 'severity=~"warning|critical"']
    playbook: p
    params: {host: "{{ alert.labels.instance }}"}
    dedup: {key: "{{ params.host }}", cooldown: 1h}
    continue: true
  - name: page-critical
    matchers: ['severity="critical"']
    playbook: p
    params: {who: "oncall-{{ alert.labels.team | default('sre') }}"}
  - name: needs-label
    matchers: ['alertname="NeedsLabel"']
    playbook: p
    params: {zone: "{{ alert.labels.zone }}"}
"""
PLAYBOOK = 'name: p\nsteps:\n  - id: s\n    action: script\n    with: {command: ["true"]}\n'
NOW = 1_795_000_000.0

# (labels, the rules that must run for it, in order)
TABLE: list[tuple[dict[str, str], list[str]]] = [
    ({"instance": "db-1", "severity": "warning"}, ["disk"]),
    ({"instance": "db-2", "severity": "critical"}, ["disk", "page-critical"]),
    ({"instance": "db-3", "severity": "critical", "team": "storage"}, ["disk", "page-critical"]),
    ({"instance": "db-4", "severity": "info"}, []),
]


def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path, rules=RULES, playbooks={"p": PLAYBOOK}))


def parsed(name: str, starts_at: str = "2026-11-24T10:00:00Z", **labels: str) -> Alert:
    return parse_payload(payload(alert(name, starts_at=starts_at, **labels))).alerts[0]


@pytest.mark.parametrize(("labels", "expected"), TABLE)
async def test_route_test_agrees_with_the_engine(
    tmp_path: Path, store: Store, labels: dict[str, str], expected: list[str]
) -> None:
    """For each alert of the table, route-test lists the rules, playbooks and params that the
    engine then admits for the same alert, in the same order; afterwards it reports that same
    notification as a duplicate and a new one of the same alert as held by the rule's cooldown,
    as a second delivery to the engine shows."""
    cfg = config(tmp_path)
    a = parsed("DiskFull", **labels)
    rows = explain(a, cfg.rules, cfg.playbooks)
    before = await read_state(store, a, rows, NOW)
    assert [verdict(a, r, before) for r in rows] == ["would run"] * len(expected)

    engine = Engine(config=cfg, store=store, metrics=Metrics(), consumer="t", clock=lambda: NOW)
    report = await engine.ingest(parse_payload(payload(alert("DiskFull", **labels))))
    admitted = [(x["rule"], x["playbook"]) for x in report.accepted]
    assert admitted == [(r.rule, r.playbook) for r in rows] == [(name, "p") for name in expected]
    for row in rows:
        execution = await store.get(next(x["execution_id"] for x in report.accepted if x["rule"] == row.rule))
        assert execution is not None and execution.meta.params == row.params

    after = await read_state(store, a, rows, NOW + 1)
    assert all(verdict(a, r, after).startswith("duplicate") for r in rows)
    later = parsed("DiskFull", starts_at="2026-11-24T11:00:00Z", **labels)
    state = await read_state(store, later, explain(later, cfg.rules, cfg.playbooks), NOW + 2)
    said = {r.rule: verdict(later, r, state).split(":")[0] for r in rows}
    second = await engine.ingest(
        parse_payload(payload(alert("DiskFull", starts_at="2026-11-24T11:00:00Z", **labels)))
    )
    done = {x["rule"]: x.get("reason", "admitted") for x in second.suppressed + second.accepted}
    assert said == {rule: ("would run" if reason == "admitted" else reason) for rule, reason in done.items()}
    if "disk" in expected:
        assert said["disk"] == "cooldown"


async def test_a_rate_limit_about_to_trip_is_predicted_as_the_engine_then_decides(
    tmp_path: Path, store: Store
) -> None:
    """A rule with rate_limit max 2 per hour: route-test says "would run" while fewer than 2 were
    admitted in the hour and "rate_limited" once 2 were, which is what admission then answers."""
    rules = "rules:\n  - name: flappy\n    matchers: ['alertname=\"Flap\"']\n    playbook: p\n"
    rules += "    rate_limit: {max: 2, per: 1h}\n"
    cfg = load_config(write_config(tmp_path, rules=rules, playbooks={"p": PLAYBOOK}))
    engine = Engine(config=cfg, store=store, metrics=Metrics(), consumer="t", clock=lambda: NOW)
    for n in range(3):
        a = parsed("Flap", instance=f"host-{n}")
        rows = explain(a, cfg.rules, cfg.playbooks)
        said = verdict(a, rows[0], await read_state(store, a, rows, NOW))
        report = await engine.ingest(parse_payload(payload(alert("Flap", instance=f"host-{n}"))))
        if n < 2:
            assert said == "would run" and len(report.accepted) == 1
        else:
            assert said.startswith("rate_limited: the rule was admitted 2 times in the last 3600s")
            assert [x["reason"] for x in report.suppressed] == ["rate_limited"]


def test_a_rule_whose_template_fails_is_reported_refused(tmp_path: Path) -> None:
    """A matching rule whose params cannot render for this alert is listed, refused, with the
    reason, as the engine refuses it."""
    cfg = config(tmp_path)
    a = parsed("NeedsLabel")
    rows = explain(a, cfg.rules, cfg.playbooks)
    assert [r.rule for r in rows] == ["needs-label"]
    said = verdict(a, rows[0], StoreState(seen=False, cooldowns={}, breakers={}))
    assert said.startswith("refused:") and "zone" in said


def test_an_open_circuit_breaker_is_reported_until_it_closes(tmp_path: Path) -> None:
    """A rule whose breaker is open is reported as circuit_open with the time it closes."""
    cfg = config(tmp_path)
    a = parsed("DiskFull", instance="db-1", severity="warning")
    rows = explain(a, cfg.rules, cfg.playbooks)
    said = verdict(a, rows[0], StoreState(seen=False, cooldowns={}, breakers={"disk": NOW + 60}))
    closes = datetime.fromtimestamp(NOW + 60, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    assert said == f"circuit_open: the rule's circuit breaker is open until {closes}"


def route_test(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", "route-test", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=PROJECT,
    )


def test_cli_prints_rules_in_order_and_exits_by_whether_any_matched(tmp_path: Path) -> None:
    """The command line: labels in, each matching rule with its playbook and params out, exit 0;
    exit 1 when nothing matches; exit 2 naming a malformed label; --json carries the same."""
    path = write_config(tmp_path, rules=RULES, playbooks={"p": PLAYBOOK})
    store = f"sqlite:///{tmp_path / 'state.db'}"
    r = route_test(
        "--config", str(path), "--store", store, "alertname=DiskFull", "instance=db-2", "severity=critical"
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1] == "1. rule disk -> playbook p" and lines[5] == "2. rule page-critical -> playbook p"
    assert "params: host='db-2'" in r.stdout and "params: who='oncall-sre'" in r.stdout
    assert r.stdout.count("would run") == 2

    r = route_test("--config", str(path), "--offline", "alertname=Other")
    assert r.returncode == 1 and "no rule matches" in r.stdout

    r = route_test("--config", str(path), "--offline", "alertname")
    assert r.returncode == 2 and "label 'alertname': expected NAME=VALUE" in r.stderr

    r = route_test(
        "--config", str(path), "--offline", "--json", "alertname=DiskFull", "instance=x", "severity=warning"
    )
    report: dict[str, Any] = json.loads(r.stdout)
    assert report["store_consulted"] is False
    assert [(x["rule"], x["params"], x["verdict"]) for x in report["rules"]] == [
        ("disk", {"host": "x"}, "would run (the store was not consulted)")
    ]


def test_cli_reads_an_alert_from_a_payload_file(tmp_path: Path) -> None:
    """--alert takes a webhook body as Alertmanager sends it (its first alert)."""
    path = write_config(tmp_path, rules=RULES, playbooks={"p": PLAYBOOK})
    body = tmp_path / "alert.json"
    body.write_text(json.dumps(payload(alert("DiskFull", instance="db-9", severity="warning"))))
    r = route_test("--config", str(path), "--offline", "--alert", str(body))
    assert r.returncode == 0, r.stderr
    assert "rule disk -> playbook p" in r.stdout and "host='db-9'" in r.stdout
