"""The `http` action: one HTTP request; the response's status and (capped) body become outputs.

Credentials come from files named in `with:` (read when the step runs), so they never appear in
the playbook, the history or the logs.
"""

from __future__ import annotations

import base64
import json
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from receiver.actions.base import ActionContext, ActionResult
from receiver.durations import parse_duration
from receiver.integrations import SecretError, read_secret


class BasicAuth(BaseModel):
    """`with.basic_auth`: a user name and a file holding the password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    password_file: str


class HttpParams(BaseModel):
    """`with:` of an http step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^(https?://|\{\{)")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    bearer_token_file: str | None = None
    basic_auth: BasicAuth | None = None
    expect: list[int] = Field(default_factory=lambda: list(range(200, 300)))  # statuses that succeed
    timeout: float | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _one_body(self) -> HttpParams:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give json or body, not both")
        if self.bearer_token_file is not None and self.basic_auth is not None:
            raise ValueError("give bearer_token_file or basic_auth, not both")
        return self


class HttpAction:
    """Sends the request; fails on a connection error, a timeout, or a status not in `expect`."""

    name: ClassVar[str] = "http"
    Params: ClassVar[type[BaseModel]] = HttpParams

    async def run(self, params: BaseModel, ctx: ActionContext, *, timeout_s: float) -> ActionResult:
        """Send the request and read the body up to the output cap."""
        assert isinstance(params, HttpParams)
        limit = min(timeout_s, params.timeout) if params.timeout is not None else timeout_s
        headers = dict(params.headers)
        try:
            if params.bearer_token_file is not None:
                headers["Authorization"] = f"Bearer {read_secret(params.bearer_token_file)}"
            if params.basic_auth is not None:
                password = read_secret(params.basic_auth.password_file)
                pair = f"{params.basic_auth.username}:{password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        except SecretError as e:
            return ActionResult(ok=False, error=str(e))
        data = params.body.encode() if params.body is not None else None
        if params.json_body is not None:
            data = json.dumps(params.json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as session,
                session.request(params.method, params.url, headers=headers, data=data) as resp,
            ):
                raw = await resp.content.read(ctx.output_limit + 1)
                status = resp.status
        except TimeoutError:
            return ActionResult(ok=False, error=f"timed out after {limit:g}s", timed_out=True)
        except aiohttp.ClientError as e:
            return ActionResult(ok=False, error=f"{params.method} {_safe(params.url)}: {e}")
        text = raw[: ctx.output_limit].decode("utf-8", errors="replace")
        if len(raw) > ctx.output_limit:
            text += "\n[... body cut at the output limit]"
        ok = status in params.expect
        error = None if ok else f"HTTP {status} from {params.method} {_safe(params.url)}"
        return ActionResult(ok=ok, stdout=text, error=error, outputs={"status": status})


def _safe(url: str) -> str:
    """A URL without its query string or credentials, for error messages."""
    from yarl import URL

    u = URL(url)
    return str(u.with_user(None).with_query(None).with_fragment(None))
