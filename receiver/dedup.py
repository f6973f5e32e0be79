"""Admission planning: from a payload and the rules, what the store must decide atomically. Pure.

For every alert the plan carries its idempotency key (fingerprint, startsAt, status) and, for a
firing alert, one candidate execution per matching rule with its cooldown key. The store then
decides all of it in one atomic call (see store/base.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from receiver.errors import TemplateError
from receiver.execution import ExecutionMeta
from receiver.models import Alert, WebhookPayload
from receiver.playbook import Playbook
from receiver.rules import RouteDecision, RouteFailure, Rule, route


class Outcome(StrEnum):
    """What admission decided for one candidate execution."""

    ADMITTED = "admitted"
    DUPLICATE = "duplicate"  # this (fingerprint, startsAt, status) was already processed
    COOLDOWN = "cooldown"  # the rule's dedup key ran within its cooldown
    RATE_LIMITED = "rate_limited"  # the rule hit its rate_limit now: its circuit breaker opens
    CIRCUIT_OPEN = "circuit_open"  # the rule's circuit breaker is open


@dataclass(frozen=True)
class Candidate:
    """An execution to create, unless the store finds it a duplicate or in cooldown."""

    meta: ExecutionMeta
    cooldown_key: str
    cooldown_s: float
    rate_max: int = 0  # the rule's rate_limit.max; 0: the rule has no circuit breaker
    rate_per_s: float = 0.0


@dataclass(frozen=True)
class AlertPlan:
    """One alert's part of the admission: its idempotency key and its candidates."""

    alert: Alert
    seen_key: str
    candidates: tuple[Candidate, ...] = ()

    @property
    def resolved(self) -> bool:
        """Whether this alert is a resolved notification (it closes executions, starts none)."""
        return self.alert.status == "resolved"


@dataclass(frozen=True)
class RouteProblem:
    """A rule matched an alert but could not be applied (its templates failed)."""

    alert: Alert
    rule: str
    error: str
    playbook: str = ""


@dataclass(frozen=True)
class AdmissionPlan:
    """Everything a payload asks of the store, plus what routing alone already decided."""

    alerts: tuple[AlertPlan, ...]
    unrouted: tuple[Alert, ...] = ()
    problems: tuple[RouteProblem, ...] = ()


def seen_key(alert: Alert) -> str:
    """The idempotency key of one notification of one alert instance."""
    return f"{alert.fingerprint}:{alert.starts_at.isoformat()}:{alert.status}"


def cooldown_key(decision: RouteDecision) -> str:
    """The cooldown key: a rule's dedup key, scoped to the rule."""
    return f"{decision.rule}:{decision.dedup_key}"


@dataclass
class _Builder:
    plans: list[AlertPlan] = field(default_factory=list)
    unrouted: list[Alert] = field(default_factory=list)
    problems: list[RouteProblem] = field(default_factory=list)


def plan_admission(
    payload: WebhookPayload,
    rules: tuple[Rule, ...],
    *,
    now: float,
    new_id: Callable[[float], str],
    playbooks: Mapping[str, Playbook] | None = None,
) -> AdmissionPlan:
    """Route every alert of a payload and build what the store must admit, per alert.

    When `playbooks` is given, a playbook's `lock` is rendered here, with the alert and the
    rule's params, so that the store can hold executions of the same target apart.
    """
    b = _Builder()
    for alert in payload.alerts:
        key = seen_key(alert)
        if alert.status == "resolved":
            b.plans.append(AlertPlan(alert=alert, seen_key=key))
            continue
        candidates: list[Candidate] = []
        decisions = route(alert, rules)
        if not decisions:
            b.unrouted.append(alert)
        for d in decisions:
            if isinstance(d, RouteFailure):
                b.problems.append(RouteProblem(alert=alert, rule=d.rule, error=d.error, playbook=d.playbook))
                continue
            playbook = (playbooks or {}).get(d.playbook)
            lock = ""
            if playbook is not None and playbook.lock is not None:
                try:
                    lock = render_lock(playbook, alert, d.params, d.rule)
                except TemplateError as e:
                    b.problems.append(
                        RouteProblem(alert=alert, rule=d.rule, error=str(e), playbook=d.playbook)
                    )
                    continue
            meta = ExecutionMeta(
                id=new_id(now),
                rule=d.rule,
                playbook=d.playbook,
                params=d.params,
                dedup_key=d.dedup_key,
                on_resolved=d.on_resolved,
                alert=alert,
                created_at=now,
                receiver=payload.header.receiver,
                group_key=payload.header.group_key,
                lock=lock,
                lock_policy=playbook.lock_policy if playbook is not None else "wait",
                playbook_version=playbook.version if playbook is not None else "",
            )
            rl = d.rate_limit
            candidates.append(
                Candidate(
                    meta=meta,
                    cooldown_key=cooldown_key(d),
                    cooldown_s=d.cooldown_s,
                    rate_max=rl.max if rl else 0,
                    rate_per_s=rl.per if rl else 0.0,
                )
            )
        if candidates:
            b.plans.append(AlertPlan(alert=alert, seen_key=key, candidates=tuple(candidates)))
    return AdmissionPlan(alerts=tuple(b.plans), unrouted=tuple(b.unrouted), problems=tuple(b.problems))


def render_lock(playbook: Playbook, alert: Alert, params: Mapping[str, str], rule: str) -> str:
    """The name a playbook's `lock` gives this alert's target; TemplateError if it renders empty."""
    assert playbook.lock is not None
    context = {"alert": alert.context(), "params": dict(params), "rule": {"name": rule}}
    name = playbook.lock.render(context).strip()
    if not name:
        raise TemplateError(playbook.lock.where, "rendered an empty lock name")
    return name
