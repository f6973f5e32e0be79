"""The `alertmanager.silence` action: silence the alert while remediation runs, through
Alertmanager's v2 API, and expire the silence when the execution ends (expire_silence)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, field_validator

from receiver.actions import texts
from receiver.actions.base import ActionContext, ActionResult
from receiver.durations import parse_duration
from receiver.errors import TemplateError
from receiver.integrations import AlertmanagerSettings, SecretError


class SilenceParams(BaseModel):
    """`with:` of an alertmanager.silence step; every key is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] | None = None  # which of the alert's labels to match; default all of them
    duration: float = 3600.0  # a safety net: the silence ends by itself even if nobody expires it
    comment: str | None = None  # default: the playbook and a link to the execution
    created_by: str = "receiver"
    expire_on_end: bool = True  # expire it when the execution ends, whatever the outcome

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SilenceAction:
    """Creates the silence; outputs.silence_id is its id."""

    name: ClassVar[str] = "alertmanager.silence"
    Params: ClassVar[type[BaseModel]] = SilenceParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """POST /api/v2/silences with equality matchers on the alert's labels."""
        assert isinstance(params, SilenceParams)
        am = ctx.integrations.alertmanager
        if am is None:
            return ActionResult(ok=False, error="alertmanager is not configured")
        labels: dict[str, str] = dict(ctx.template_context["alert"]["labels"])
        if params.labels is not None:
            missing = [n for n in params.labels if n not in labels]
            if missing:
                return ActionResult(ok=False, error=f"the alert has no label {', '.join(missing)}")
            labels = {n: labels[n] for n in params.labels}
        try:
            comment = params.comment or texts.render(texts.SILENCE_COMMENT, ctx.template_context)
        except TemplateError as e:
            return ActionResult(ok=False, error=str(e))
        now = time.time()
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in sorted(labels.items())
            ],
            "startsAt": _iso(now),
            "endsAt": _iso(now + params.duration),
            "createdBy": params.created_by,
            "comment": comment,
        }
        ok, status, answer = await _call(am, "POST", "/api/v2/silences", min(timeout_s, am.timeout), body)
        if not ok:
            return ActionResult(ok=False, error=answer)
        silence_id = answer_json(answer).get("silenceID")
        if status != 200 or not silence_id:
            return ActionResult(ok=False, error=f"alertmanager answered HTTP {status}: {answer[:300]}")
        return ActionResult(
            ok=True,
            stdout=f"silence {silence_id}\n",
            outputs={"silence_id": silence_id, "expire_on_end": params.expire_on_end},
        )


async def expire_silence(am: AlertmanagerSettings, silence_id: str) -> str | None:
    """DELETE the silence; None when done (or already gone), else the error."""
    ok, status, answer = await _call(am, "DELETE", f"/api/v2/silence/{silence_id}", am.timeout, None)
    if not ok:
        return answer
    if status in (200, 404):
        return None
    return f"alertmanager answered HTTP {status}: {answer[:300]}"


def answer_json(text: str) -> dict[str, Any]:
    """A JSON object answer, or {}."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def _call(
    am: AlertmanagerSettings, method: str, path: str, timeout_s: float, body: Any
) -> tuple[bool, int, str]:
    """(reached, status, text) of one API call; when not reached, text is the error."""
    try:
        headers = am.headers()
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.request(method, am.endpoint(path), json=body, headers=headers) as resp,
        ):
            return True, resp.status, await resp.text()
    except SecretError as e:
        return False, 0, str(e)
    except TimeoutError:
        return False, 0, f"alertmanager did not answer within {timeout_s:g}s"
    except aiohttp.ClientError as e:
        return False, 0, f"alertmanager: {e}"
