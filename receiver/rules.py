"""Routing rules: which playbook runs for an alert, with which params. Pure: no I/O.

Rules are tried in file order; the first that matches wins unless it says `continue: true`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from receiver.durations import parse_duration
from receiver.errors import ConfigError, TemplateError
from receiver.matchers import Matcher, MatcherSyntaxError, matches_all, parse_matchers
from receiver.models import Alert
from receiver.templates import Template, compile_template
from receiver.yamlsource import Document

OnResolved = Literal["cancel", "ignore"]


class DedupSpec(BaseModel):
    """`dedup:` of a rule: a key template and how long a run of that key suppresses the next."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = "{{ alert.fingerprint }}"
    cooldown: float = 0.0

    @field_validator("cooldown", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class RateLimitSpec(BaseModel):
    """`rate_limit:` of a rule: a circuit breaker. When the rule's playbook was admitted `max`
    times within `per`, or failed `failures` times in a row, the rule stops remediating (its
    alerts are left to people, and `notify` is told) until `per` has passed or an operator
    resets it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(ge=1)
    per: float
    failures: int | None = Field(default=None, ge=1)
    notify: list[str] = Field(default_factory=list)

    @field_validator("per", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class RuleSpec(BaseModel):
    """One rule as written in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1)
    matchers: list[str] = Field(default_factory=list)
    playbook: str = Field(min_length=1)
    params: dict[str, str] = Field(default_factory=dict)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    on_resolved: OnResolved = "ignore"
    continue_: bool = Field(default=False, alias="continue")
    rate_limit: RateLimitSpec | None = None

    @field_validator("params", mode="before")
    @classmethod
    def _stringify(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (str(x) if isinstance(x, int | float | bool) else x) for k, x in v.items()}
        return v


class RulesFile(BaseModel):
    """A rules file: `rules:` and a list of rules."""

    model_config = ConfigDict(extra="forbid")

    rules: list[dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    """A loaded rule: matchers parsed, templates compiled."""

    name: str
    matchers: tuple[Matcher, ...]
    playbook: str
    params: tuple[tuple[str, Template], ...]
    dedup_key: Template
    cooldown_s: float
    on_resolved: OnResolved
    continue_: bool
    source: str
    rate_limit: RateLimitSpec | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether every matcher of the rule holds for the labels."""
        return matches_all(self.matchers, labels)


@dataclass(frozen=True)
class RouteDecision:
    """A rule matched an alert: the playbook to run, params rendered, the dedup key rendered."""

    rule: str
    playbook: str
    params: dict[str, str]
    dedup_key: str
    cooldown_s: float
    on_resolved: OnResolved
    rate_limit: RateLimitSpec | None = None


@dataclass(frozen=True)
class RouteFailure:
    """A rule matched but its templates failed for this alert (e.g. a label it needs is missing)."""

    rule: str
    error: str
    playbook: str = ""  # the rule's playbook, which did not get to run


def matching(alert: Alert, rules: tuple[Rule, ...]) -> list[Rule]:
    """The rules that apply to an alert, in order, honouring `continue`; nothing rendered."""
    out: list[Rule] = []
    for rule in rules:
        if rule.matches(alert.labels):
            out.append(rule)
            if not rule.continue_:
                break
    return out


def route(alert: Alert, rules: tuple[Rule, ...]) -> list[RouteDecision | RouteFailure]:
    """Decide which rules apply to a firing alert, in order, honouring `continue`."""
    out: list[RouteDecision | RouteFailure] = []
    for rule in matching(alert, rules):
        ctx: dict[str, Any] = {"alert": alert.context(), "rule": {"name": rule.name}}
        try:
            params = {k: t.render(ctx) for k, t in rule.params}
            key = rule.dedup_key.render({**ctx, "params": params})
        except TemplateError as e:
            out.append(RouteFailure(rule=rule.name, error=str(e), playbook=rule.playbook))
        else:
            out.append(
                RouteDecision(
                    rule=rule.name,
                    playbook=rule.playbook,
                    params=params,
                    dedup_key=key,
                    cooldown_s=rule.cooldown_s,
                    on_resolved=rule.on_resolved,
                    rate_limit=rule.rate_limit,
                )
            )
    return out


def _compile_rule(spec: RuleSpec, doc: Document, base: tuple[str | int, ...]) -> Rule:
    where = f"rule {spec.name!r}"
    matchers: list[Matcher] = []
    for i, text in enumerate(spec.matchers):
        try:
            matchers.extend(parse_matchers(text))
        except MatcherSyntaxError as e:
            raise ConfigError(
                str(e), file=doc.file, line=doc.line_of((*base, "matchers", i)), where=where
            ) from e
    try:
        params = tuple((k, compile_template(v, f"{where} params.{k}")) for k, v in spec.params.items())
        key = compile_template(spec.dedup.key, f"{where} dedup.key")
    except TemplateError as e:
        raise ConfigError(str(e), file=doc.file, line=doc.line_of(base), where=where) from e
    return Rule(
        name=spec.name,
        matchers=tuple(matchers),
        playbook=spec.playbook,
        params=params,
        dedup_key=key,
        cooldown_s=spec.dedup.cooldown,
        rate_limit=spec.rate_limit,
        on_resolved=spec.on_resolved,
        continue_=spec.continue_,
        source=f"{doc.file}:{doc.line_of(base) or 0}",
    )


def load_rules(doc: Document) -> tuple[list[Rule], list[ConfigError]]:
    """Load the rules of one YAML document; every bad rule is reported, the good ones kept."""
    try:
        top = RulesFile.model_validate(doc.data)
    except ValidationError as e:
        return [], doc.errors_from(e)
    rules: list[Rule] = []
    errors: list[ConfigError] = []
    for i, raw in enumerate(top.rules):
        base: tuple[str | int, ...] = ("rules", i)
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"rule {name!r}" if name else f"rules[{i}]"
        try:
            spec = RuleSpec.model_validate(raw)
            rules.append(_compile_rule(spec, doc, base))
        except ValidationError as e:
            errors.extend(doc.errors_from(e, base=base, where=where))
        except ConfigError as e:
            errors.append(e)
    return rules, errors
