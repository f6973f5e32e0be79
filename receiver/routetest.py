"""What the receiver would do with an alert, without doing it: `receiver route-test`. Pure but
for read_state, which only reads what admission would consult in the store; the rest takes that
state as plain data.

It uses the engine's own routing (`rules.route`) and the same keys admission uses, so what it
prints is what a webhook would get, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from receiver.dedup import cooldown_key, render_lock, seen_key
from receiver.errors import TemplateError
from receiver.models import Alert
from receiver.playbook import Playbook
from receiver.rules import RouteFailure, Rule, route
from receiver.store.base import Store


@dataclass(frozen=True)
class RouteRow:
    """One rule that matched, in routing order, with what it would run."""

    rule: str
    playbook: str = ""
    params: dict[str, str] = field(default_factory=dict)
    dedup_key: str = ""
    cooldown_s: float = 0.0
    cooldown_key: str = ""
    lock: str | None = None
    error: str | None = None  # a template of the rule (or the playbook's lock) failed for this alert
    rate_max: int = 0  # the rule's rate_limit: at most rate_max admissions within rate_per_s
    rate_per_s: float = 0.0


@dataclass(frozen=True)
class StoreState:
    """What the store knows now that bears on admission."""

    seen: bool  # this notification (fingerprint, startsAt, status) was processed already
    cooldowns: Mapping[str, float]  # cooldown key -> when it ends (epoch seconds)
    breakers: Mapping[str, float]  # rule -> when its open circuit breaker closes
    rates: Mapping[str, int] = field(default_factory=dict)  # rule -> admissions in its rate window


def explain(alert: Alert, rules: tuple[Rule, ...], playbooks: Mapping[str, Playbook]) -> list[RouteRow]:
    """The rules that apply to the alert, in order, with rendered params, dedup key and lock."""
    rows: list[RouteRow] = []
    for d in route(alert, rules):
        if isinstance(d, RouteFailure):
            rows.append(RouteRow(rule=d.rule, error=d.error))
            continue
        lock, error = None, None
        playbook = playbooks.get(d.playbook)
        if playbook is not None and playbook.lock is not None:
            try:
                lock = render_lock(playbook, alert, d.params, d.rule)
            except TemplateError as e:
                error = str(e)
        rows.append(
            RouteRow(
                rule=d.rule,
                playbook=d.playbook,
                params=dict(d.params),
                dedup_key=d.dedup_key,
                cooldown_s=d.cooldown_s,
                cooldown_key=cooldown_key(d),
                lock=lock,
                error=error,
                rate_max=d.rate_limit.max if d.rate_limit else 0,
                rate_per_s=d.rate_limit.per if d.rate_limit else 0.0,
            )
        )
    return rows


async def read_state(store: Store, alert: Alert, rows: list[RouteRow], now: float) -> StoreState:
    """Read, and only read, what admission would consult: the notification's idempotency key, the
    rules' cooldown keys, their circuit breakers and their rate windows. StoreUnavailable
    propagates."""
    seen = await store.seen([seen_key(alert)], now)
    cooldowns = await store.cooldowns([r.cooldown_key for r in rows if r.cooldown_s > 0], now)
    breakers = await store.breakers([r.rule for r in rows if r.error is None], now)
    windows = {r.rule: r.rate_per_s for r in rows if r.error is None and r.rate_max > 0}
    rates = await store.rate_counts(windows, now)
    return StoreState(seen=seen[0], cooldowns=cooldowns, breakers=breakers, rates=rates)


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def verdict(alert: Alert, row: RouteRow, state: StoreState | None) -> str:
    """What admission would decide for this rule now, in the order admission checks."""
    if alert.status == "resolved":
        return "starts nothing: a resolved notification closes the alert's open executions"
    if row.error is not None:
        return f"refused: {row.error}"
    if state is None:
        return "would run (the store was not consulted)"
    if state.seen:
        return "duplicate: this notification was processed already"
    if row.rule in state.breakers:
        return f"circuit_open: the rule's circuit breaker is open until {_at(state.breakers[row.rule])}"
    ran = state.rates.get(row.rule, 0)
    if row.rate_max > 0 and ran >= row.rate_max:
        return (
            f"rate_limited: the rule was admitted {ran} times in the last {row.rate_per_s:g}s"
            f" (rate_limit.max {row.rate_max}); this alert would open its circuit breaker"
        )
    if row.cooldown_s > 0 and row.cooldown_key in state.cooldowns:
        until = _at(state.cooldowns[row.cooldown_key])
        return f"cooldown: dedup key {row.dedup_key!r} ran within the cooldown; until {until}"
    return "would run"


def as_json(alert: Alert, rows: list[RouteRow], state: StoreState | None) -> dict[str, Any]:
    """The report as data: the alert's identity and each matching rule with its verdict."""
    return {
        "alert": {"fingerprint": alert.fingerprint, "status": alert.status, "labels": dict(alert.labels)},
        "store_consulted": state is not None,
        "rules": [
            {
                "rule": r.rule,
                "playbook": r.playbook or None,
                "params": r.params,
                "dedup_key": r.dedup_key or None,
                "lock": r.lock,
                "error": r.error,
                "verdict": verdict(alert, r, state),
            }
            for r in rows
        ],
    }


def as_text(alert: Alert, rows: list[RouteRow], state: StoreState | None) -> str:
    """The report for people, one block per matching rule."""
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(alert.labels.items()))
    lines = [f"alert {{{labels}}} ({alert.status}, fingerprint {alert.fingerprint})"]
    if not rows:
        lines.append("no rule matches: the receiver would answer it as unrouted")
    for i, r in enumerate(rows, 1):
        lines.append(f"{i}. rule {r.rule}" + (f" -> playbook {r.playbook}" if r.playbook else ""))
        if r.params:
            lines.append("   params: " + ", ".join(f"{k}={v!r}" for k, v in r.params.items()))
        if r.dedup_key:
            lines.append(
                f"   dedup key: {r.dedup_key!r}" + (f", cooldown {r.cooldown_s:g}s" if r.cooldown_s else "")
            )
        if r.lock is not None:
            lines.append(f"   lock: {r.lock}")
        lines.append(f"   {verdict(alert, r, state)}")
    return "\n".join(lines)
