"""The `notify` action: a message to named notifiers through Apprise (Slack, Microsoft Teams,
mail, Discord, Telegram, a JSON webhook and the rest Apprise supports).

Notifier URLs often hold tokens, so neither they nor Apprise's own log lines (which may quote
them) reach the receiver's logs or the history: a failure names the notifier only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from receiver.actions import texts
from receiver.actions.base import ActionContext, ActionResult
from receiver.errors import TemplateError
from receiver.integrations import NotifierSettings, SecretError
from receiver.redact import redact

# Apprise logs delivery errors with the service's URL in them; keep them out of our output.
_apprise_log = logging.getLogger("apprise")
_apprise_log.addHandler(logging.NullHandler())
_apprise_log.propagate = False

Kind = Literal["info", "success", "warning", "failure"]


class NotifyParams(BaseModel):
    """`with:` of a notify step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: list[str] = Field(min_length=1)  # names under `notifiers:` in the main config
    title: str | None = None  # default: outcome, alert name and playbook
    body: str | None = None  # default: the alert, each step's outcome, recovery and a link
    type: Kind | None = None  # default: from the execution's outcome


def kind_of(status: str | None) -> Kind:
    """The notification type an execution's status calls for."""
    if status is None or status in ("queued", "running", "waiting_approval"):
        return "info"
    if status == "succeeded":
        return "success"
    if status in ("cancelled", "rejected"):
        return "warning"
    return "failure"


async def deliver(notifier: NotifierSettings, *, title: str, body: str, kind: Kind) -> bool:
    """Send through every URL of one notifier; True when all took it."""
    import apprise  # slow to import: only when a message goes out

    ap = apprise.Apprise()
    if not ap.add(notifier.all_urls()):
        return False
    return bool(await ap.async_notify(body=body, title=title, notify_type=apprise.NotifyType(kind)))


class NotifyAction:
    """Sends one message to each named notifier; fails if any of them did not take it."""

    name: ClassVar[str] = "notify"
    Params: ClassVar[type[BaseModel]] = NotifyParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """Render the texts and deliver them to every notifier at once."""
        assert isinstance(params, NotifyParams)
        context: dict[str, Any] = dict(ctx.template_context)
        unknown = [n for n in params.to if n not in ctx.integrations.notifiers]
        if unknown:
            return ActionResult(ok=False, error=f"unknown notifier {', '.join(unknown)}")
        try:
            title = params.title if params.title is not None else texts.render(texts.TITLE, context)
            body = params.body if params.body is not None else texts.render(texts.BODY, context)
        except TemplateError as e:
            return ActionResult(ok=False, error=str(e))
        kind = params.type or kind_of(context.get("execution", {}).get("status"))
        title, body = redact(title), redact(body)

        async def one(name: str) -> str | None:
            try:
                ok = await deliver(ctx.integrations.notifiers[name], title=title, body=body, kind=kind)
            except SecretError as e:
                return f"notifier {name!r}: {e}"
            return None if ok else f"notifier {name!r}: delivery failed"

        try:
            errors = await asyncio.wait_for(asyncio.gather(*(one(n) for n in params.to)), timeout_s)
        except TimeoutError:
            return ActionResult(
                ok=False, error=f"notifiers did not answer within {timeout_s:g}s", timed_out=True
            )
        failed = [e for e in errors if e]
        sent = [n for n, e in zip(params.to, errors, strict=True) if not e]
        out = f"{title}\n\n{body}\n"
        if failed:
            return ActionResult(ok=False, stdout=out, error="; ".join(failed), outputs={"sent": sent})
        return ActionResult(ok=True, stdout=out, outputs={"sent": sent})
