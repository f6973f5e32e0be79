"""Parsing webhook payloads from real, newer and older Alertmanagers."""

from __future__ import annotations

import copy

import pytest

from receiver.errors import PayloadError
from receiver.models import label_fingerprint, parse_payload
from tests.support import FIXTURES, alert, fixture, payload

FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.json"))


def test_fixtures_are_present() -> None:
    """The captured Alertmanager bodies are in the repository (an empty glob would test nothing)."""
    assert len(FIXTURE_NAMES) == 4


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_captured_fixture_parses(name: str) -> None:
    """Every body a real Alertmanager 0.25 sent parses with all its alerts and their fingerprints."""
    body = fixture(name)
    p = parse_payload(body)
    assert len(p.alerts) == len(body["alerts"])
    assert [a.fingerprint for a in p.alerts] == [a["fingerprint"] for a in body["alerts"]]
    assert p.rejected == []


def test_firing_alert_has_no_end() -> None:
    """endsAt 0001-01-01T00:00:00Z means the alert has no end."""
    p = parse_payload(fixture("firing_group.json"))
    assert all(a.ends_at is None for a in p.alerts)


def test_status_is_read_per_alert_not_per_group() -> None:
    """A group whose status is firing can carry a resolved alert; each alert keeps its own status."""
    p = parse_payload(fixture("mixed_firing_resolved.json"))
    assert p.header.status == "firing"
    assert [a.status for a in p.alerts] == ["resolved", "firing"]
    assert p.alerts[0].ends_at is not None


def test_truncated_alerts_is_read() -> None:
    """truncatedAlerts from max_alerts is kept in the header."""
    assert parse_payload(fixture("truncated_max_alerts.json")).header.truncated_alerts == 1


def test_newer_alertmanager_fields_are_ignored() -> None:
    """Fields added by newer Alertmanagers (notification_reason, routeLabels) do not break parsing."""
    body = fixture("firing_group.json")
    body["notification_reason"] = "repeat_interval"
    body["routeLabels"] = {"team": "shop"}
    body["alerts"][0]["someFutureField"] = {"x": 1}
    assert len(parse_payload(body).alerts) == 2


def test_older_alertmanager_without_fingerprint_version_groupkey() -> None:
    """Without fingerprint, version and groupKey, a stable fingerprint comes from the sorted labels."""
    body = fixture("firing_group.json")
    for k in ("version", "groupKey"):
        del body[k]
    for a in body["alerts"]:
        del a["fingerprint"]
    reordered = copy.deepcopy(body)
    reordered["alerts"][0]["labels"] = dict(reversed(list(body["alerts"][0]["labels"].items())))
    first, second = parse_payload(body), parse_payload(reordered)
    assert first.alerts[0].fingerprint == second.alerts[0].fingerprint
    assert first.alerts[0].fingerprint == label_fingerprint(body["alerts"][0]["labels"])
    assert first.alerts[0].fingerprint != first.alerts[1].fingerprint
    assert len(first.alerts[0].fingerprint) == 16


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "(body)"),
        ("text", "(body)"),
        ({"version": "4"}, "alerts"),
        ({"alerts": {"a": 1}}, "alerts"),
        ({"alerts": [], "truncatedAlerts": "many"}, "payload.truncatedAlerts"),
        ({"alerts": [{"status": "firing"}]}, "alerts[0].labels"),
        ({"alerts": [{**alert(), "status": "burning"}]}, "alerts[0].status"),
        ({"alerts": [{**alert(), "startsAt": "yesterday"}]}, "alerts[0].startsAt"),
        ({"alerts": [{**alert(), "labels": {"a": 1}}]}, "alerts[0].labels.a"),
        ({"alerts": ["nope"]}, "alerts[0]"),
    ],
)
def test_bad_payloads_name_the_field(body: object, field: str) -> None:
    """A bad envelope, or a payload whose every alert is bad, raises PayloadError naming the field."""
    with pytest.raises(PayloadError) as exc:
        parse_payload(body)
    assert exc.value.field == field


def test_one_bad_alert_does_not_lose_the_others() -> None:
    """A malformed alert is rejected alone; the valid alerts of the same payload are kept."""
    body = payload(
        alert("Good", instance="a"), {"status": "firing", "labels": "oops"}, alert("Good", instance="b")
    )
    p = parse_payload(body)
    assert [a.labels["instance"] for a in p.alerts] == ["a", "b"]
    assert [r.index for r in p.rejected] == [1]
    assert "alerts[1].labels" in p.rejected[0].error
