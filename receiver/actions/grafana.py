"""The `grafana.annotate` action: a Grafana annotation (POST /api/annotations) tagged with the
alert, rule, playbook and outcome, over the time the execution has run so far."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from receiver.actions import texts
from receiver.actions.base import ActionContext, ActionResult
from receiver.errors import TemplateError
from receiver.integrations import SecretError


class AnnotateParams(BaseModel):
    """`with:` of a grafana.annotate step; every key is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = None  # default: playbook, alert, outcome and the execution's URL
    tags: list[str] = Field(default_factory=list)  # added to the default tags
    dashboard_uid: str | None = None  # absent: an organisation-wide annotation
    panel_id: int | None = None


def default_tags(context: dict[str, Any]) -> list[str]:
    """receiver, the alert's name, rule:, playbook: and, once known, outcome:."""
    tags = [
        "receiver",
        str(context["alert"]["labels"].get("alertname", "")),
        f"rule:{context['rule']['name']}",
        f"playbook:{context['playbook']['name']}",
    ]
    status = context["execution"].get("status")
    if status:
        tags.append(f"outcome:{status}")
    return tags


class GrafanaAnnotateAction:
    """Posts one annotation; its id becomes outputs.annotation_id."""

    name: ClassVar[str] = "grafana.annotate"
    Params: ClassVar[type[BaseModel]] = AnnotateParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """POST the annotation with the configured token."""
        assert isinstance(params, AnnotateParams)
        grafana = ctx.integrations.grafana
        if grafana is None:
            return ActionResult(ok=False, error="grafana is not configured")
        context = dict(ctx.template_context)
        try:
            text = params.text if params.text is not None else texts.render(texts.ANNOTATION, context)
            headers = grafana.headers()
        except (TemplateError, SecretError) as e:
            return ActionResult(ok=False, error=str(e))
        now_ms = int(time.time() * 1000)
        started = context["execution"].get("started_at")
        body: dict[str, Any] = {
            "time": int(started * 1000) if started else now_ms,
            "timeEnd": now_ms,
            "tags": [*default_tags(context), *params.tags],
            "text": text,
        }
        if params.dashboard_uid is not None:
            body["dashboardUID"] = params.dashboard_uid
        if params.panel_id is not None:
            body["panelId"] = params.panel_id
        limit = min(timeout_s, grafana.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as session,
                session.post(grafana.endpoint("/api/annotations"), json=body, headers=headers) as resp,
            ):
                answer = await resp.text()
                status = resp.status
        except TimeoutError:
            return ActionResult(ok=False, error=f"grafana did not answer within {limit:g}s", timed_out=True)
        except aiohttp.ClientError as e:
            return ActionResult(ok=False, error=f"grafana: {e}")
        if status != 200:
            return ActionResult(ok=False, error=f"grafana answered HTTP {status}: {answer[:300]}")
        try:
            ident = json.loads(answer).get("id")
        except (ValueError, AttributeError):
            ident = None
        return ActionResult(ok=True, stdout=answer[:1000], outputs={"annotation_id": ident})
