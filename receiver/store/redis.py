"""The Redis store: shared by every replica. Admission is one Lua script per payload, work goes
through a Redis Stream with a consumer group, records and history indexes are Redis keys.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from receiver.dedup import AdmissionPlan, Outcome
from receiver.errors import StoreUnavailable
from receiver.execution import (
    Execution,
    ExecutionMeta,
    StepRecord,
    TimelineEvent,
    id_time_bound,
)
from receiver.states import ExecutionStatus, sources_of
from receiver.store.base import (
    AdmitResult,
    Decided,
    HistoryQuery,
    Page,
    ResolvedUpdate,
    StoreLimits,
)

# Every key starts with this prefix so that the receiver can share a Redis with other users.
DEFAULT_PREFIX = "receiver:"
# The consumer group every replica's workers read the queue stream through.
GROUP = "workers"
# How many index entries one history request reads at most before it returns a cursor; bounds the
# work of a request whose filters match little.
HISTORY_SCAN_LIMIT = 5000
HISTORY_BATCH = 200

_CONNECTION_ERRORS = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, OSError)


def _script(name: str) -> str:
    return resources.files("receiver.store").joinpath(name).read_text(encoding="utf-8")


def _event(at: float, event: str, *, step: str | None = None, detail: str | None = None) -> str:
    return TimelineEvent(at=at, event=event, step=step, detail=detail).model_dump_json(exclude_none=True)


class RedisStore:
    """Store on Redis (standalone or Sentinel, plain or TLS)."""

    name = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        limits: StoreLimits | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self._r = client
        self._limits = limits or StoreLimits()
        self._p = prefix
        self._queue = f"{prefix}queue"
        self._admit = client.register_script(_script("admit.lua"))
        self._start = client.register_script(_script("start.lua"))
        self._transition = client.register_script(_script("transition.lua"))
        self._group_ready = False

    @classmethod
    def from_url(
        cls, url: str, *, limits: StoreLimits | None = None, prefix: str = DEFAULT_PREFIX
    ) -> RedisStore:
        """Connect lazily to a redis:// or rediss:// URL."""
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2,
            health_check_interval=10,
            # After a Redis restart every pooled connection is dead; retry once on a fresh one
            # instead of failing the call. Safe for every call here: admission is idempotent
            # (seen keys), start and transition are compare-and-set, the rest are reads.
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, limits=limits, prefix=prefix)

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except _CONNECTION_ERRORS as e:
            raise StoreUnavailable("redis", str(e) or type(e).__name__) from e

    def _k(self, *parts: str) -> str:
        return self._p + ":".join(parts)

    async def ping(self) -> None:
        """Return when Redis answers PING."""
        async with self._guard():
            await self._r.ping()

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._r.xgroup_create(self._queue, GROUP, id="0", mkstream=True)
        except rexc.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    async def admit(self, plan: AdmissionPlan, now: float) -> AdmitResult:
        """Run the admission script once for the whole payload."""
        lim = self._limits
        alerts: list[dict[str, Any]] = []
        for a in plan.alerts:
            fp = a.alert.fingerprint
            item: dict[str, Any] = {
                "seen": a.seen_key,
                "resolved": a.resolved,
                "fp": fp,
                "candidates": [],
            }
            if a.resolved:
                resolved_at = a.alert.ends_at.timestamp() if a.alert.ends_at else now
                item["resolved_at"] = repr(resolved_at)
                item["resolved_event"] = _event(now, "alert_resolved")
                item["cancel_event"] = _event(now, "cancelled", detail="alert resolved before it ran")
                item["cancel_error"] = "alert resolved before the remediation started"
            for c in a.candidates:
                m = c.meta
                item["candidates"].append(
                    {
                        "id": m.id,
                        "meta": m.model_dump_json(),
                        "on_resolved": m.on_resolved,
                        "cooldown_key": c.cooldown_key,
                        "cooldown_ms": int(c.cooldown_s * 1000),
                        "event": _event(now, "queued", detail=f"rule {m.rule} matched"),
                        "idx": [
                            self._k("idx", "all"),
                            self._k("idx", "rule", m.rule),
                            self._k("idx", "playbook", m.playbook),
                            self._k("idx", "alertname", m.alert.name),
                            self._k("idx", "fingerprint", fp),
                        ],
                    }
                )
            alerts.append(item)
        req = {
            "prefix": self._p,
            "now": repr(now),
            "seen_ttl_ms": int(lim.idempotency_ttl_s * 1000),
            "retention_ms": int(lim.retention_s * 1000),
            "max_executions": lim.max_executions,
            "cutoff": id_time_bound(now - lim.retention_s),
            "alerts": alerts,
        }
        async with self._guard():
            await self._ensure_group()
            raw = await self._admit(args=[json.dumps(req)])
        rows = json.loads(raw) or []  # cjson encodes an empty table as {}
        result = AdmitResult()
        for ident, what in rows:
            if what in ("cancelled", "resolved"):
                result.resolved.append(ResolvedUpdate(ident, cancelled=what == "cancelled"))
            else:
                result.decided.append(Decided(ident, Outcome(what)))
        return result

    async def claim(self, consumer: str, wait_s: float) -> Execution | None:
        """Read messages through the consumer group until one's execution moves to running.

        A message whose execution is no longer queued (cancelled while it waited) is acknowledged
        and skipped.
        """
        deadline = time.monotonic() + wait_s
        async with self._guard():
            await self._ensure_group()
            while True:
                block = max(1, int((deadline - time.monotonic()) * 1000))
                try:
                    resp: Any = await self._r.xreadgroup(
                        GROUP, consumer, {self._queue: ">"}, count=1, block=block
                    )
                except rexc.ResponseError as e:
                    if "NOGROUP" not in str(e):
                        raise
                    # Redis restarted without its data: create the group again, from the start
                    # of whatever the stream holds now.
                    self._group_ready = False
                    await self._ensure_group()
                    continue
                if not resp:
                    return None
                _, messages = resp[0]
                msg_id, fields = messages[0]
                ident = str(fields["id"])
                now = time.time()
                started = await self._start(
                    keys=[self._k("exec", ident), self._k("exec", ident, "timeline"), self._queue],
                    args=[GROUP, msg_id, repr(now), _event(now, "running")],
                )
                if started:
                    return await self.get(ident)
                if time.monotonic() >= deadline:
                    return None

    async def save_steps(self, execution_id: str, steps: list[StepRecord], event: TimelineEvent) -> None:
        """Write the steps and a timeline event in one transaction."""
        payload = json.dumps([s.model_dump(mode="json") for s in steps])
        async with self._guard():
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(self._k("exec", execution_id), "steps", payload)
            pipe.rpush(self._k("exec", execution_id, "timeline"), event.model_dump_json(exclude_none=True))
            await pipe.execute()

    async def transition(
        self, execution_id: str, status: ExecutionStatus, *, now: float, error: str | None
    ) -> bool:
        """Compare-and-set the status in one script; acknowledge the queue message when terminal."""
        sources = sorted(s.value for s in sources_of(status))
        async with self._guard():
            done = await self._transition(
                keys=[self._k("exec", execution_id), self._k("exec", execution_id, "timeline"), self._queue],
                args=[
                    GROUP,
                    status.value,
                    repr(now),
                    error or "",
                    _event(now, status.value, detail=error),
                    "1" if status.terminal else "0",
                    *sources,
                ],
            )
        return bool(done)

    async def status(self, execution_id: str) -> ExecutionStatus | None:
        """HGET of the status field."""
        async with self._guard():
            raw = await self._r.hget(self._k("exec", execution_id), "status")
        return ExecutionStatus(str(raw)) if raw else None

    async def get(self, execution_id: str) -> Execution | None:
        """Read one execution's hash and timeline."""
        async with self._guard():
            pipe = self._r.pipeline(transaction=False)
            pipe.hgetall(self._k("exec", execution_id))
            pipe.lrange(self._k("exec", execution_id, "timeline"), 0, -1)
            h, timeline = await pipe.execute()
        return _decode(h, timeline)

    async def history(self, query: HistoryQuery) -> Page:
        """Walk the narrowest index newest first, filtering, until the page is full."""
        if query.fingerprint is not None:
            index = self._k("idx", "fingerprint", query.fingerprint)
        elif query.rule is not None:
            index = self._k("idx", "rule", query.rule)
        elif query.playbook is not None:
            index = self._k("idx", "playbook", query.playbook)
        elif query.alertname is not None:
            index = self._k("idx", "alertname", query.alertname)
        else:
            index = self._k("idx", "all")
        upper = "+"
        if query.until is not None:
            upper = "(" + id_time_bound(query.until + 0.001)
        if query.cursor is not None and (upper == "+" or query.cursor < upper[1:]):
            upper = "(" + query.cursor
        lower = "[" + id_time_bound(query.since) if query.since is not None else "-"
        items: list[Execution] = []
        scanned = 0
        last_seen: str | None = None
        async with self._guard():
            while scanned < HISTORY_SCAN_LIMIT:
                ids: list[str] = await self._r.zrange(  # type: ignore[assignment]
                    index, upper, lower, desc=True, bylex=True, offset=0, num=HISTORY_BATCH
                )
                if not ids:
                    return Page(items=items, next_cursor=None)
                pipe = self._r.pipeline(transaction=False)
                for i in ids:
                    pipe.hgetall(self._k("exec", i))
                    pipe.lrange(self._k("exec", i, "timeline"), 0, -1)
                raw = await pipe.execute()
                gone: list[str] = []
                for n, i in enumerate(ids):
                    scanned += 1
                    last_seen = i
                    e = _decode(raw[2 * n], raw[2 * n + 1])
                    if e is None:
                        gone.append(i)
                        continue
                    if query.accepts(e):
                        items.append(e)
                        if len(items) == query.limit:
                            return Page(items=items, next_cursor=i)
                if gone:
                    await self._r.zrem(index, *gone)
                upper = "(" + ids[-1]
        return Page(items=items, next_cursor=last_seen)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._r.aclose()


def _decode(h: dict[str, str], timeline: list[str]) -> Execution | None:
    if not h or "meta" not in h:
        return None
    return Execution(
        meta=ExecutionMeta.model_validate_json(h["meta"]),
        status=ExecutionStatus(h["status"]),
        started_at=float(h["started_at"]) if "started_at" in h else None,
        finished_at=float(h["finished_at"]) if "finished_at" in h else None,
        resolved_at=float(h["resolved_at"]) if "resolved_at" in h else None,
        error=h.get("error") or None,
        steps=[StepRecord.model_validate(s) for s in json.loads(h.get("steps", "[]"))],
        timeline=[TimelineEvent.model_validate_json(t) for t in timeline],
    )
