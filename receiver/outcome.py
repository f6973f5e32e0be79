"""What happens after an execution's outcome is known, besides its playbook's own hooks:
silences it created are expired, and the outcome is reported as the config's `outcome:` says
(a notification, a Grafana annotation). Deliveries are retried with backoff, logged and counted,
and never change the outcome."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from receiver.actions import ACTIONS, ActionContext, ActionResult
from receiver.actions.alertmanager import expire_silence
from receiver.actions.grafana import AnnotateParams
from receiver.actions.notify import NotifyParams
from receiver.execution import StepRecord, TimelineEvent
from receiver.integrations import Integrations
from receiver.metrics import Metrics

Checkpoint = Callable[[TimelineEvent], Awaitable[None]]
# How long one outcome delivery attempt may take.
DELIVERY_TIMEOUT_S = 30.0


async def expire_silences(
    records: list[StepRecord],
    integrations: Integrations,
    checkpoint: Checkpoint,
    now: Callable[[], float],
    log: Any,
) -> None:
    """Expire every silence a step of this execution created with expire_on_end."""
    am = integrations.alertmanager
    for rec in records:
        silence_id = rec.outputs.get("silence_id")
        if am is None or not silence_id or not rec.outputs.get("expire_on_end", True):
            continue
        error = await expire_silence(am, str(silence_id))
        event = "silence_expired" if error is None else "silence_expire_failed"
        await checkpoint(TimelineEvent(at=now(), event=event, step=rec.id, detail=error or str(silence_id)))
        log.info(
            "silence.expired" if error is None else "silence.expire_failed", silence=silence_id, error=error
        )


async def report(
    ctx: ActionContext,
    integrations: Integrations,
    metrics: Metrics,
    checkpoint: Checkpoint,
    now: Callable[[], float],
    log: Any,
) -> None:
    """Send the configured outcome notification and annotation, each retried with backoff."""
    cfg = integrations.outcome
    deliveries: list[tuple[str, str, Any]] = []
    if cfg.notify:
        deliveries.append(("notify", "notify", NotifyParams(to=cfg.notify)))
    if cfg.annotate and integrations.grafana is not None:
        deliveries.append(("annotate", "grafana.annotate", AnnotateParams()))
    for kind, action, params in deliveries:
        result = ActionResult(ok=False)
        for attempt in range(1, cfg.attempts + 1):
            result = await ACTIONS[action].run(params, ctx, timeout_s=DELIVERY_TIMEOUT_S)
            if result.ok:
                break
            log.warning("outcome.delivery_failed", kind=kind, attempt=attempt, error=result.error)
            if attempt < cfg.attempts:
                await asyncio.sleep(cfg.backoff * 2 ** (attempt - 1) * (0.5 + random.random() / 2))
        metrics.outcome_deliveries.labels(kind, "sent" if result.ok else "failed").inc()
        event = f"outcome_{kind}_{'sent' if result.ok else 'failed'}"
        await checkpoint(TimelineEvent(at=now(), event=event, detail=result.error))
        log.info("outcome.delivered", kind=kind, ok=result.ok, error=result.error)
