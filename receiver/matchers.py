"""Alertmanager label matchers: the same syntax and semantics as Alertmanager 0.25's parser.

`=` and `!=` compare strings, `=~` and `!~` match a regex anchored at both ends, and a label that
is missing from an alert matches as the empty string. Several matchers may be written in one
string, comma separated, optionally wrapped in braces: `{alertname="Foo", severity=~"crit|page"}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum


class MatchType(Enum):
    """The four matcher operators."""

    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


class MatcherSyntaxError(ValueError):
    """A matcher string that Alertmanager would also refuse."""


# Alertmanager's classic matcher grammar (pkg/labels/parse.go).
_MATCHER = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Matcher:
    """One `name op value` matcher; regex values are compiled once, anchored at both ends."""

    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, type: MatchType, value: str) -> Matcher:
        """Build a matcher, compiling the regex for `=~` and `!~`; MatcherSyntaxError if invalid."""
        regex = None
        if type in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                regex = re.compile(f"(?:{value})")
            except re.error as e:
                raise MatcherSyntaxError(f"invalid regex {value!r} for label {name!r}: {e}") from e
        return cls(name, type, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label set satisfies this matcher (a missing label is the empty string)."""
        actual = labels.get(self.name, "")
        if self.type is MatchType.EQUAL:
            return actual == self.value
        if self.type is MatchType.NOT_EQUAL:
            return actual != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(actual) is not None
        return hit if self.type is MatchType.REGEX else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.type.value}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as `severity=~"critical|page"` or `env!=prod`."""
    m = _MATCHER.match(text)
    if not m:
        raise MatcherSyntaxError(f"bad matcher format: {text!r}")
    name, op, raw = m.group(1), m.group(2), m.group(3)
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            if ch == "n":
                out.append("\n")
            elif ch in ('"', "\\"):
                out.append(ch)
            else:  # a spurious escape: Alertmanager keeps the backslash
                out.append("\\" + ch)
            continue
        if ch == "\\":
            if i < len(raw) - 1:
                escaped = True
                continue
            out.append("\\")
        elif ch == '"':
            if not quoted or i < len(raw) - 1:
                raise MatcherSyntaxError(f"matcher value contains unescaped double quote: {text!r}")
            quoted = False
        else:
            out.append(ch)
    if quoted:
        raise MatcherSyntaxError(f"matcher value is missing its closing double quote: {text!r}")
    return Matcher.create(name, MatchType(op), "".join(out))


def _split(text: str) -> list[str]:
    """Split on commas outside double quotes, as Alertmanager's ParseMatchers does."""
    tokens: list[str] = []
    token: list[str] = []
    inside = escaped = False
    for ch in text:
        if ch == "," and not inside:
            tokens.append("".join(token))
            token = []
            continue
        if ch == '"':
            if not escaped:
                inside = not inside
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(ch)
    last = "".join(token).strip()
    if last:
        tokens.append(last)
    return tokens


def parse_matchers(text: str) -> list[Matcher]:
    """Parse `a="b", c=~"d|e"` or `{a="b", c=~"d|e"}` into matchers (all must hold)."""
    s = text.strip()
    if s.startswith("{"):
        s = s[1:]
    if s.endswith("}"):
        s = s[:-1]
    return [parse_matcher(t) for t in _split(s)]


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher holds for the label set (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)
