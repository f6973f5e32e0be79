"""Alertmanager matcher syntax and semantics, as tables of plain data."""

from __future__ import annotations

import pytest

from receiver.matchers import MatcherSyntaxError, MatchType, parse_matcher, parse_matchers

LABELS = {"alertname": "DiskFull", "severity": "critical", "env": "prod-eu", "path": 'C:\\dir "x"'}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('alertname="DiskFull"', True),
        ('alertname="Disk"', False),
        ("alertname=DiskFull", True),  # unquoted values are allowed
        ('severity!="warning"', True),
        ('severity!="critical"', False),
        ('env=~"prod-.*"', True),
        ('env=~"prod"', False),  # anchored at both ends: no partial match
        ('env=~".*eu"', True),
        ('env=~"eu"', False),
        ('env!~"prod-.*"', False),
        ('env!~"staging.*"', True),
        ('severity=~"warning|critical"', True),  # the alternation is wrapped: ^(?:a|b)$
        ('severity=~"crit|x"', False),
        ('missing=""', True),  # a missing label equals ""
        ('missing!=""', False),
        ('missing=~".*"', True),
        ('missing=~".+"', False),
        ('missing!~".+"', True),
        ('path="C:\\\\dir \\"x\\""', True),  # escaped backslash and quotes
        ('  alertname  =  "DiskFull"  ', True),  # whitespace around parts
    ],
)
def test_matcher_semantics(text: str, expected: bool) -> None:
    """Each operator, anchoring, escapes and missing labels behave as in Alertmanager."""
    assert parse_matcher(text).matches(LABELS) is expected


@pytest.mark.parametrize(
    ("text", "name", "type_", "value"),
    [
        ('a="b"', "a", MatchType.EQUAL, "b"),
        ('a!="b"', "a", MatchType.NOT_EQUAL, "b"),
        ('a=~"b+"', "a", MatchType.REGEX, "b+"),
        ('a!~"b+"', "a", MatchType.NOT_REGEX, "b+"),
        ('a="line\\nbreak"', "a", MatchType.EQUAL, "line\nbreak"),
        ('a="back\\\\slash"', "a", MatchType.EQUAL, "back\\slash"),
        ('a="spurious\\d"', "a", MatchType.EQUAL, "spurious\\d"),  # kept as Alertmanager does
        ('a=""', "a", MatchType.EQUAL, ""),
        ("a_b:c=x", "a_b:c", MatchType.EQUAL, "x"),
        ('a="with, comma"', "a", MatchType.EQUAL, "with, comma"),
        ("a==b", "a", MatchType.EQUAL, "=b"),  # Alertmanager reads the second = as the value
    ],
)
def test_matcher_parsing(text: str, name: str, type_: MatchType, value: str) -> None:
    """The name, operator and unescaped value are read exactly."""
    m = parse_matcher(text)
    assert (m.name, m.type, m.value) == (name, type_, value)


@pytest.mark.parametrize(
    "text",
    ['a="unterminated', 'a="x"y"', "1a=b", "=b", "a", 'a=~"("', 'a=~"[z-a]"', 'a="quote " inside"'],
)
def test_matcher_rejects(text: str) -> None:
    """Malformed matchers are refused with MatcherSyntaxError, as Alertmanager refuses them."""
    with pytest.raises(MatcherSyntaxError):
        parse_matcher(text)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ('{alertname="DiskFull", severity=~"crit.*"}', 2),
        ('alertname="DiskFull",severity="critical"', 2),
        ('{a="x,y", b="z"}', 2),  # a comma inside quotes does not split
        ("{}", 0),
        ('{a="b",}', 1),
    ],
)
def test_matchers_list_forms(text: str, count: int) -> None:
    """The brace form and the comma-separated form parse into several matchers."""
    assert len(parse_matchers(text)) == count


def test_brace_form_matches_all() -> None:
    """Every matcher of the brace form must hold."""
    ms = parse_matchers('{alertname="DiskFull", severity="warning"}')
    assert not all(m.matches(LABELS) for m in ms)
    ms = parse_matchers('{alertname="DiskFull", severity="critical"}')
    assert all(m.matches(LABELS) for m in ms)


def test_str_round_trips() -> None:
    """A matcher prints in a form that parses back to the same matcher."""
    m = parse_matcher('path="C:\\\\dir \\"x\\""')
    assert parse_matcher(str(m)) == m
