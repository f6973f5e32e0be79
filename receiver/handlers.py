"""Thin HTTP handlers: validate into a model, call one function, render JSON."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

import yaml
from aiohttp import web

from receiver import __version__
from receiver.auth import Role
from receiver.durations import parse_duration
from receiver.engine import Engine
from receiver.errors import NotFound, PayloadError, RequestError, StoreUnavailable
from receiver.execution import Verdict, iso
from receiver.middleware import IDENTITY, ROLE
from receiver.models import parse_payload
from receiver.reload import Reloader
from receiver.states import ExecutionStatus
from receiver.store.base import HistoryQuery

ENGINE = web.AppKey("engine", Engine)
RELOADER = web.AppKey("reloader", Reloader)
MAX_PAGE = 500
DEFAULT_PAGE = 50
# How long a computed report is answered again (reading 20,000 records takes seconds).
STATS_CACHE_S = 10.0
# /-/ready answers within this even when the store hangs.
READY_TIMEOUT_S = 2.0


async def webhook(request: web.Request) -> web.Response:
    """POST /webhook: admit an Alertmanager notification."""
    if request.app[ENGINE].stopping:  # Alertmanager retries a 503, on another replica too
        raise web.HTTPServiceUnavailable(reason="the receiver is shutting down; retry later")
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise PayloadError("(body)", f"not valid JSON: {e}") from e
    report = await request.app[ENGINE].ingest(parse_payload(body))
    return web.json_response(report.as_json())


async def healthy(request: web.Request) -> web.Response:
    """GET /-/healthy: the process is up."""
    return web.json_response({"status": "healthy"})


async def ready(request: web.Request) -> web.Response:
    """GET /-/ready: ready only when the store answers."""
    engine = request.app[ENGINE]
    if engine.stopping:
        return web.json_response({"status": "not ready", "error": "shutting down"}, status=503)
    try:
        await asyncio.wait_for(engine.store.ping(), READY_TIMEOUT_S)
    except (StoreUnavailable, TimeoutError) as e:
        return web.json_response({"status": "not ready", "error": str(e) or "store timed out"}, status=503)
    return web.json_response({"status": "ready", "store": engine.store.name})


async def reload_config(request: web.Request) -> web.Response:
    """POST /-/reload: load the config files again; 400 with every error if they are invalid
    (the config in use stays)."""
    result = await request.app[RELOADER].reload("api")
    if result.ok:
        return web.json_response(result.as_json())
    n = len(result.errors)
    return web.json_response(
        {"error": f"the new config has {n} error(s); the one in use stays", **result.as_json()}, status=400
    )


async def whoami(request: web.Request) -> web.Response:
    """GET /api/v1/whoami: the caller's token name and role (without API tokens configured, the
    API is open and everyone may do everything)."""
    if ROLE not in request:
        return web.json_response({"name": None, "role": Role.ADMIN.name.lower(), "authenticated": False})
    return web.json_response(
        {"name": request[IDENTITY], "role": request[ROLE].name.lower(), "authenticated": True}
    )


async def status(request: web.Request) -> web.Response:
    """GET /api/v1/status: the receiver's version, store, and the config in use."""
    engine = request.app[ENGINE]
    return web.json_response(
        {
            "version": __version__,
            "store": engine.store.name,
            "config": request.app[RELOADER].status(),
        }
    )


async def stats(request: web.Request) -> web.Response:
    """GET /api/v1/stats?since=24h: per rule and per playbook, how remediations did.

    A report reads up to STATS_SCAN_MAX records, so the same report is answered from memory for
    STATS_CACHE_S, however many people look; one is computed at a time.
    """
    for k in request.query:
        if k != "since":
            raise RequestError(k, "unknown parameter (known: since)")
    key = request.query.get("since", "")
    since_param = _time_param("since", key)  # a bad one is refused before any cache
    cache = request.app[STATS_CACHE]
    async with cache.lock:
        hit = cache.reports.get(key)
        if hit is not None and time.monotonic() - hit[0] < STATS_CACHE_S:
            return web.json_response(hit[1])
        body = await request.app[ENGINE].report(since_param)
        cache.reports = {k: v for k, v in cache.reports.items() if time.monotonic() - v[0] < STATS_CACHE_S}
        cache.reports[key] = (time.monotonic(), body)
    return web.json_response(body)


@dataclass
class StatsCache:
    """Reports computed lately, by their `since` parameter, with when (monotonic)."""

    reports: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


STATS_CACHE = web.AppKey("stats_cache", StatsCache)


def _openapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        resources.files("receiver").joinpath("openapi.yaml").read_text("utf-8")
    )
    doc["info"]["version"] = __version__
    return doc


_OPENAPI = json.dumps(_openapi())


async def openapi(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json: the OpenAPI 3 document of this API."""
    return web.Response(text=_OPENAPI, content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    body = request.app[ENGINE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


# Times given as parameters are held between the epoch and the end of year 9999, so that any
# number or duration, however large, still reads as a time (before the epoch means "from the start").
LATEST_TIME = 253402300799.0


def _read_time(value: str) -> float | None:
    """Epoch seconds, RFC 3339, or a duration meaning that long ago; None if it is none of them."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        pass
    try:
        return time.time() - parse_duration(value)
    except ValueError:
        return None


def _time_param(name: str, value: str | None) -> float | None:
    """A time parameter (see _read_time), held between the epoch and LATEST_TIME."""
    if value is None or value == "":
        return None
    t = _read_time(value)
    if t is None or t != t:  # unreadable, or NaN
        raise RequestError(name, f"expected RFC 3339, epoch seconds or a duration like 1h, got {value!r}")
    return min(max(t, 0.0), LATEST_TIME)


def history_query(q: dict[str, str]) -> HistoryQuery:
    """Read the history filters from query parameters; RequestError names a bad one."""
    known = {
        "alertname",
        "rule",
        "playbook",
        "status",
        "fingerprint",
        "since",
        "until",
        "cursor",
        "limit",
    }
    for k in q:
        if k not in known:
            raise RequestError(k, f"unknown parameter (known: {', '.join(sorted(known))})")
    status = None
    if q.get("status"):
        try:
            status = ExecutionStatus(q["status"])
        except ValueError:
            allowed = ", ".join(s.value for s in ExecutionStatus)
            raise RequestError("status", f"unknown status {q['status']!r} (one of {allowed})") from None
    limit = DEFAULT_PAGE
    if q.get("limit"):
        # isdigit() alone also accepts digits int() refuses, such as "²" (found by the fuzz test).
        if not (q["limit"].isascii() and q["limit"].isdigit()) or not 1 <= int(q["limit"]) <= MAX_PAGE:
            raise RequestError("limit", f"expected an integer from 1 to {MAX_PAGE}")
        limit = int(q["limit"])
    return HistoryQuery(
        alertname=q.get("alertname") or None,
        rule=q.get("rule") or None,
        playbook=q.get("playbook") or None,
        status=status,
        fingerprint=q.get("fingerprint") or None,
        since=_time_param("since", q.get("since")),
        until=_time_param("until", q.get("until")),
        cursor=q.get("cursor") or None,
        limit=limit,
    )


async def list_executions(request: web.Request) -> web.Response:
    """GET /api/v1/executions: history, newest first, with cursor paging."""
    engine = request.app[ENGINE]
    page = await engine.store.history(history_query(dict(request.query)))
    base = engine.config.settings.external_url.rstrip("/")
    return web.json_response(
        {"items": [e.summary(base) for e in page.items], "next_cursor": page.next_cursor}
    )


async def get_execution(request: web.Request) -> web.Response:
    """GET /api/v1/executions/{id}: one execution in full."""
    engine = request.app[ENGINE]
    ident = request.match_info["id"]
    execution = await engine.store.get(ident)
    if execution is None:
        raise NotFound("execution", ident)
    body = execution.detail(engine.config.settings.external_url.rstrip("/"))
    body["plan"] = await engine.plan_of(execution.meta)
    return web.json_response(body)


async def cancel_execution(request: web.Request) -> web.Response:
    """POST /api/v1/executions/{id}/cancel: stop a queued or running execution."""
    engine = request.app[ENGINE]
    execution = await engine.cancel(request.match_info["id"])
    return web.json_response(execution.detail(engine.config.settings.external_url.rstrip("/")))


# Longest comment and approver name an approval decision keeps.
MAX_COMMENT = 1000
MAX_BY = 100


async def _decision_body(request: web.Request) -> tuple[str, str]:
    """`by` and `comment` from an optional JSON body {"by": ..., "comment": ...}."""
    raw = await request.read()
    if not raw.strip():
        return "operator", ""
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise RequestError("body", f"not JSON: {e}") from None
    if not isinstance(body, dict):
        raise RequestError("body", 'expected an object like {"by": "alice", "comment": "..."}')
    by, comment = body.get("by", "operator"), body.get("comment", "")
    if not isinstance(by, str) or not 0 < len(by) <= MAX_BY:
        raise RequestError("by", f"expected a name of 1 to {MAX_BY} characters")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise RequestError("comment", f"expected text of at most {MAX_COMMENT} characters")
    return by.strip() or "operator", comment


async def approve_execution(request: web.Request) -> web.Response:
    """POST /api/v1/executions/{id}/approve: let an execution waiting for approval go on."""
    return await _decide(request, Verdict.APPROVED)


async def reject_execution(request: web.Request) -> web.Response:
    """POST /api/v1/executions/{id}/reject: end an execution waiting for approval as rejected."""
    return await _decide(request, Verdict.REJECTED)


async def _decide(request: web.Request, verdict: Verdict) -> web.Response:
    engine = request.app[ENGINE]
    by, comment = await _decision_body(request)
    if IDENTITY in request:  # an API token's owner decides, whatever the body says
        by = request[IDENTITY]
    execution = await engine.decide(request.match_info["id"], verdict, by=by, comment=comment)
    return web.json_response(execution.detail(engine.config.settings.external_url.rstrip("/")))


async def retry_execution(request: web.Request) -> web.Response:
    """POST /api/v1/executions/{id}/retry: run an ended execution's playbook again for its alert."""
    engine = request.app[ENGINE]
    meta = await engine.retry(request.match_info["id"])
    return web.json_response(
        {"execution_id": meta.id, "url": engine.execution_url(meta.id), "retry_of": meta.retry_of},
        status=201,
    )


async def reset_rule(request: web.Request) -> web.Response:
    """POST /api/v1/rules/{name}/reset: close a rule's circuit breaker."""
    engine = request.app[ENGINE]
    name = request.match_info["name"]
    was_open = await engine.reset_breaker(name)
    return web.json_response({"rule": name, "was_open": was_open})


async def list_rules(request: web.Request) -> web.Response:
    """GET /api/v1/rules: the loaded rules, in the order they are tried, with open breakers."""
    engine = request.app[ENGINE]
    rules = engine.config.rules
    guarded = [r.name for r in rules if r.rate_limit is not None]
    open_until = await engine.store.breakers(guarded, time.time())
    return web.json_response(
        {
            "rules": [
                {
                    "name": r.name,
                    "matchers": [str(m) for m in r.matchers],
                    "playbook": r.playbook,
                    "continue": r.continue_,
                    "on_resolved": r.on_resolved,
                    "cooldown_s": r.cooldown_s,
                    "rate_limit": r.rate_limit.model_dump(exclude={"notify"}) if r.rate_limit else None,
                    "circuit_open_until": iso(open_until.get(r.name)),
                    "source": r.source,
                }
                for r in rules
            ]
        }
    )


async def list_playbooks(request: web.Request) -> web.Response:
    """GET /api/v1/playbooks: the loaded playbooks and their steps."""
    playbooks = request.app[ENGINE].config.playbooks
    return web.json_response(
        {
            "playbooks": [
                {
                    "name": p.name,
                    "description": p.description,
                    "timeout_s": p.timeout_s,
                    "version": p.version,
                    "steps": [
                        {
                            "id": s.id,
                            "action": s.action,
                            "timeout_s": s.timeout_s,
                            "needs": list(p.plan.needs[s.id]),
                        }
                        for s in p.steps
                    ],
                    "source": p.source,
                }
                for p in playbooks.values()
            ]
        }
    )
