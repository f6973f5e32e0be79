"""The Redis store: shared by every replica. Admission is one Lua script per payload, work goes
through a Redis Stream with a consumer group, records and history indexes are Redis keys.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from receiver.dedup import AdmissionPlan, Outcome
from receiver.errors import ConfigError, Overloaded, StoreUnavailable
from receiver.execution import (
    Approval,
    Decision,
    Execution,
    ExecutionMeta,
    StepRecord,
    TimelineEvent,
    decode_steps,
    encode_steps,
    id_time_bound,
)
from receiver.states import TERMINAL, ExecutionStatus, sources_of
from receiver.store.base import (
    STATS_BUCKET_S,
    AdmitResult,
    Decided,
    HistoryQuery,
    Lease,
    Page,
    PlaybookDefinition,
    ResolvedUpdate,
    StoreLimits,
    stats_bucket,
    taken_over,
)

# Every key starts with this prefix so that the receiver can share a Redis with other users.
DEFAULT_PREFIX = "receiver:"
# The consumer group every replica's workers read the queue stream through.
GROUP = "workers"
# How many index entries one history request reads at most before it returns a cursor; bounds the
# work of a request whose filters match little.
HISTORY_SCAN_LIMIT = 5000
# At most this often (or reclaim_after / 4) a claim scans for idle work when the last scan found none.
RECLAIM_SCAN_S = 1.0
HISTORY_BATCH = 200

_STATS_SEP = "\x1f"  # between rule, playbook and reason in a stats field (names never hold it)
_CONNECTION_ERRORS = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, OSError)


def _script(name: str) -> str:
    """A script with the shared functions of lib.lua before it."""
    folder = resources.files("receiver.store")
    return folder.joinpath("lib.lua").read_text(encoding="utf-8") + folder.joinpath(name).read_text(
        encoding="utf-8"
    )


def _sentence(message: str) -> str:
    """redis-py's message without the repr of a client it appends when no Sentinel answers
    ("No master found for 'x' : <redis.asyncio.client.Redis(<ConnectionPool(...)>)> - why"):
    "No master found for 'x' (why)". The repr filled log lines and 503 bodies."""
    head, sep, rest = message.partition(" : <redis.")
    if not sep:
        return message
    why = rest.rsplit(">", 1)[-1].strip(" -")
    return f"{head} ({why})" if why else head


def _event(at: float, event: str, *, step: str | None = None, detail: str | None = None) -> str:
    """A timeline event as the JSON the scripts push."""
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
        self._take = client.register_script(_script("take.lua"))
        self._transition = client.register_script(_script("transition.lua"))
        self._heartbeat = client.register_script(_script("heartbeat.lua"))
        self._park = client.register_script(_script("park.lua"))
        self._release = client.register_script(_script("release.lua"))
        self._decide = client.register_script(_script("decide.lua"))
        self._checkpoint = client.register_script(_script("checkpoint.lua"))
        self._group_ready = False
        self._reclaim_cursor = "0-0"
        self._reclaim_due = 0.0  # monotonic: no XAUTOCLAIM scan before, once one found nothing
        self._sentinels: list[aioredis.Redis] = []  # connections to Sentinels, closed with the store

    @classmethod
    def from_url(
        cls, url: str, *, limits: StoreLimits | None = None, prefix: str = DEFAULT_PREFIX
    ) -> RedisStore:
        """Connect lazily to a redis://, rediss:// (TLS) or unix:// URL, or to the primary a set
        of Sentinels names: redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]."""
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": 2,
            # A Redis that hangs (paused, or a network that drops packets) must fail calls, not
            # stall the receiver; longer than the 1s blocking reads workers make.
            "socket_timeout": 5,
            "health_check_interval": 10,
            # After a Redis restart (or a failover) every pooled connection is dead; retry once on
            # a fresh one instead of failing the call. Safe for every call here: admission is
            # idempotent (seen keys), start and transition are compare-and-set, the rest are reads.
            "retry": Retry(NoBackoff(), 1),
        }
        if url.startswith(("redis+sentinel://", "rediss+sentinel://")):
            client, sentinels = _sentinel_client(url, options)
            store = cls(client, limits=limits, prefix=prefix)
            store._sentinels = sentinels
            return store
        return cls(aioredis.Redis.from_url(url, **options), limits=limits, prefix=prefix)

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except _CONNECTION_ERRORS as e:
            # redis-py turns a cancellation that lands mid-command into a connection error; as
            # StoreUnavailable, a loop that rides out outages (the heartbeat, the sweepers) would
            # swallow it and never end, and whoever awaits that task would wait forever.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from e
            raise StoreUnavailable("redis", _sentence(str(e) or type(e).__name__)) from e

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

    async def seen(self, keys: list[str], now: float) -> list[bool]:
        """One MGET of the seen keys (one command: far cheaper in redis-py than a pipeline)."""
        if not keys:
            return []
        async with self._guard():
            values = await self._r.mget([self._k("seen", k) for k in keys])
        return [v is not None for v in values]

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
                        "lock": m.lock,
                        "lock_policy": m.lock_policy,
                        "rule": m.rule,
                        "rate_max": c.rate_max,
                        "rate_per_ms": int(c.rate_per_s * 1000),
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
            "group": GROUP,
            "now": repr(now),
            "now_ms": int(now * 1000),
            "seen_ttl_ms": int(lim.idempotency_ttl_s * 1000),
            "retention_ms": int(lim.retention_s * 1000),
            "max_executions": lim.max_executions,
            "max_queued": lim.max_queued,
            "terminal": {s.value: True for s in TERMINAL},
            "candidates": sum(len(a.candidates) for a in plan.alerts),
            "cutoff": id_time_bound(now - lim.retention_s),
            "alerts": alerts,
        }
        async with self._guard():
            await self._ensure_group()
            raw = await self._admit(args=[json.dumps(req)])
        rows = json.loads(raw) or []  # cjson encodes an empty table as {}
        if isinstance(rows, dict) and "full" in rows:
            raise Overloaded(int(rows["full"]), lim.max_queued)
        result = AdmitResult()
        for ident, what in rows:
            if what in ("cancelled", "resolved"):
                result.resolved.append(ResolvedUpdate(ident, cancelled=what == "cancelled"))
            else:
                result.decided.append(Decided(ident, Outcome(what)))
        return result

    async def claim(self, consumer: str, wait_s: float) -> Execution | None:
        """Reclaim a message idle past reclaim_after_s (XAUTOCLAIM), else read new ones through the
        consumer group until one's execution starts. Stale messages are acknowledged and skipped.
        """
        deadline = time.monotonic() + wait_s
        async with self._guard():
            await self._ensure_group()
            reclaimed = None
            if time.monotonic() >= self._reclaim_due:
                try:
                    reclaimed = await self._reclaim(consumer)
                except rexc.ResponseError as e:
                    await self._recreate_group(e)
            if reclaimed is not None:
                return reclaimed
            while True:
                block = max(1, int((deadline - time.monotonic()) * 1000))
                try:
                    resp: Any = await self._r.xreadgroup(
                        GROUP, consumer, {self._queue: ">"}, count=1, block=block
                    )
                except rexc.ResponseError as e:
                    await self._recreate_group(e)
                    continue
                if not resp:
                    return None
                _, messages = resp[0]
                msg_id, fields = messages[0]
                execution = await self._take_message(consumer, str(fields["id"]), msg_id, reclaimed=False)
                if execution is not None:
                    return execution
                if time.monotonic() >= deadline:
                    return None

    async def _recreate_group(self, e: rexc.ResponseError) -> None:
        """Redis restarted without its data (NOGROUP): create the group again, from the start of
        whatever the stream holds now. Any other error propagates."""
        if "NOGROUP" not in str(e):
            raise e
        self._group_ready = False
        self._reclaim_cursor = "0-0"
        self._reclaim_due = 0.0
        await self._ensure_group()

    async def _reclaim(self, consumer: str) -> Execution | None:
        idle_ms = int(self._limits.reclaim_after_s * 1000)
        resp: Any = await self._r.xautoclaim(
            self._queue, GROUP, consumer, idle_ms, start_id=self._reclaim_cursor, count=1
        )
        self._reclaim_cursor = str(resp[0])
        for msg_id, fields in resp[1]:
            if fields:  # an entry deleted from the stream comes back without fields
                return await self._take_message(consumer, str(fields["id"]), msg_id, reclaimed=True)
        if self._reclaim_cursor == "0-0":
            # A whole scan found nothing idle: scanning on every claim would cost each execution a
            # round trip, and work counts as idle only after reclaim_after anyway.
            self._reclaim_due = time.monotonic() + min(RECLAIM_SCAN_S, self._limits.reclaim_after_s / 4)
        return None

    async def _take_message(
        self, consumer: str, ident: str, msg_id: str, *, reclaimed: bool
    ) -> Execution | None:
        now = time.time()
        req = {
            "prefix": self._p,
            "group": GROUP,
            "id": ident,
            "msg": msg_id,
            "now": repr(now),
            "reclaimed": reclaimed,
            "retention_ms": int(self._limits.retention_s * 1000),
            "running_event": _event(now, "running", detail=f"worker {consumer}"),
            "resumed_event": _event(now, "resumed", detail=taken_over(consumer)),
            "terminal": {s.value: True for s in TERMINAL},
        }
        taken: Any = await self._take(args=[json.dumps(req)])
        if not taken:
            return None
        flat, timeline = taken
        return _decode(dict(zip(flat[::2], flat[1::2], strict=True)), timeline)

    async def heartbeat(self, execution_id: str, consumer: str) -> Lease:
        """Reset the execution's message idle time unless another consumer took it."""
        req = {"prefix": self._p, "group": GROUP, "id": execution_id, "consumer": consumer}
        async with self._guard():
            status, held = await self._heartbeat(args=[json.dumps(req)])
        return Lease(status=ExecutionStatus(status) if status else None, held=bool(held))

    async def release(self, execution_id: str, consumer: str, *, now: float) -> bool:
        """Set the message's idle time past reclaim_after (XCLAIM ... IDLE) if this consumer owns it."""
        req = {
            "prefix": self._p,
            "group": GROUP,
            "id": execution_id,
            "consumer": consumer,
            "idle_ms": int(self._limits.reclaim_after_s * 1000) + 1000,
            "event": _event(now, "handed_back", detail=f"worker {consumer} is stopping"),
        }
        async with self._guard():
            return bool(await self._release(args=[json.dumps(req)]))

    async def note_outcome(self, rule: str, *, failed: bool, failures: int, per_s: float, now: float) -> bool:
        """INCR the rule's failures in a row (DEL on success); open its breaker (True) at `failures`."""
        fails, breaker = self._k("fails", rule), self._k("breaker", rule)
        async with self._guard():
            if not failed:
                await self._r.delete(fails)
                return False
            pipe = self._r.pipeline(transaction=True)
            pipe.incr(fails)
            pipe.pexpire(fails, int(per_s * 1000))
            n, _ = await pipe.execute()
            if int(n) < failures:
                return False
            pipe = self._r.pipeline(transaction=True)
            pipe.set(breaker, "failures", px=int(per_s * 1000))
            pipe.delete(fails)
            await pipe.execute()
            return True

    async def reset_breaker(self, rule: str) -> bool:
        """DEL the breaker, the rate window and the failure count; True if the breaker was open."""
        async with self._guard():
            pipe = self._r.pipeline(transaction=True)
            pipe.delete(self._k("breaker", rule))
            pipe.delete(self._k("rate", rule), self._k("fails", rule))
            opened, _ = await pipe.execute()
        return bool(opened)

    async def backlog(self) -> int:
        """XLEN of the queue stream: one message per queued or running execution."""
        async with self._guard():
            return int(await self._r.xlen(self._queue))

    async def breakers(self, rules: list[str], now: float) -> dict[str, float]:
        """PTTL of each rule's breaker key: open ones with when they close."""
        if not rules:
            return {}
        async with self._guard():
            pipe = self._r.pipeline(transaction=False)
            for rule in rules:
                pipe.pttl(self._k("breaker", rule))
            ttls = await pipe.execute()
        return {rule: now + int(ms) / 1000 for rule, ms in zip(rules, ttls, strict=True) if int(ms) > 0}

    async def rate_counts(self, windows: Mapping[str, float], now: float) -> dict[str, int]:
        """ZCOUNT of each rule's admissions (scored in ms) within its window, as admit.lua keeps them."""
        if not windows:
            return {}
        now_ms = int(now * 1000)
        async with self._guard():
            pipe = self._r.pipeline(transaction=False)
            for rule, per_s in windows.items():
                pipe.zcount(self._k("rate", rule), now_ms - int(per_s * 1000), "+inf")
            counts = await pipe.execute()
        return {rule: int(n) for rule, n in zip(windows, counts, strict=True)}

    async def cooldowns(self, keys: list[str], now: float) -> dict[str, float]:
        """PTTL of each cooldown key: those cooling down, with when they end."""
        if not keys:
            return {}
        async with self._guard():
            pipe = self._r.pipeline(transaction=False)
            for key in keys:
                pipe.pttl(self._k("cooldown", key))
            ttls = await pipe.execute()
        return {key: now + int(ms) / 1000 for key, ms in zip(keys, ttls, strict=True) if int(ms) > 0}

    async def count_suppressed(self, counts: Mapping[tuple[str, str, str], int], now: float) -> None:
        """HINCRBY each count into the bucket's hash, which expires with the history."""
        if not counts:
            return
        key = self._k("stats", str(stats_bucket(now)))
        async with self._guard():
            pipe = self._r.pipeline(transaction=False)
            for fields, n in counts.items():
                pipe.hincrby(key, _STATS_SEP.join(fields), n)
            pipe.expire(key, int(self._limits.retention_s) + STATS_BUCKET_S)
            await pipe.execute()

    async def suppressed_since(self, since: float) -> dict[tuple[str, str, str], int]:
        """HGETALL of every bucket from `since`'s to now's, summed."""
        first, last = stats_bucket(since), stats_bucket(time.time())
        buckets = range(first, last + 1, STATS_BUCKET_S)
        out: dict[tuple[str, str, str], int] = {}
        async with self._guard():
            pipe = self._r.pipeline(transaction=False)
            for b in buckets:
                pipe.hgetall(self._k("stats", str(b)))
            hashes = await pipe.execute()
        for h in hashes:
            for fields, n in h.items():
                rule, playbook, reason = str(fields).split(_STATS_SEP)
                out[(rule, playbook, reason)] = out.get((rule, playbook, reason), 0) + int(n)
        return out

    async def publish_playbooks(self, definitions: Sequence[PlaybookDefinition]) -> None:
        """HSETNX each definition into its playbook's hash of versions."""
        if not definitions:
            return
        async with self._guard():
            pipe = self._r.pipeline(transaction=False)
            for d in definitions:
                pipe.hsetnx(self._k("playbook", d.name), d.version, d.definition)
            await pipe.execute()

    async def playbook_definition(self, name: str, version: str) -> str | None:
        """HGET of the version in its playbook's hash."""
        async with self._guard():
            raw = await self._r.hget(self._k("playbook", name), version)
        return str(raw) if raw is not None else None

    async def await_approval(self, execution_id: str, approval: Approval, *, now: float) -> bool:
        """Park the execution: waiting_approval, message acknowledged, deadline indexed."""
        req = {
            "prefix": self._p,
            "group": GROUP,
            "id": execution_id,
            "approval": approval.model_dump_json(),
            "deadline": repr(approval.deadline),
            # Kept at least until the deadline has passed and then some.
            "retention_ms": int(max(self._limits.retention_s, approval.deadline - now + 86400) * 1000),
            "event": _event(
                now,
                ExecutionStatus.WAITING_APPROVAL.value,
                step=approval.step,
                detail=approval.message or None,
            ),
        }
        async with self._guard():
            return bool(await self._park(args=[json.dumps(req)]))

    async def decide(self, execution_id: str, decision: Decision, *, now: float) -> bool:
        """Record the decision and queue the execution again."""
        req = {
            "prefix": self._p,
            "id": execution_id,
            "decision": decision.model_dump_json(),
            "event": _event(now, decision.verdict.value, detail=decision.describe()),
        }
        async with self._guard():
            return bool(await self._decide(args=[json.dumps(req)]))

    async def expired_approvals(self, now: float) -> list[str]:
        """Ids in the approvals index whose deadline is at or before now."""
        async with self._guard():
            ids: list[str] = await self._r.zrangebyscore(self._k("approvals"), "-inf", now)  # type: ignore[assignment]
        return ids

    async def save_steps(
        self, execution_id: str, steps: list[StepRecord], events: Sequence[TimelineEvent]
    ) -> None:
        """Write the steps and the timeline events in one script call."""
        encoded = [e.model_dump_json(exclude_none=True) for e in events]
        async with self._guard():
            await self._checkpoint(args=[self._k("exec", execution_id), encode_steps(steps), *encoded])

    async def transition(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        now: float,
        error: str | None,
        steps: list[StepRecord] | None = None,
        events: Sequence[TimelineEvent] = (),
    ) -> bool:
        """Compare-and-set the status in one script; a terminal state acknowledges the queue
        message, passes the lock on and drops any approval deadline."""
        req = {
            "prefix": self._p,
            "group": GROUP,
            "id": execution_id,
            "status": status.value,
            "now": repr(now),
            "error": error or "",
            "event": _event(now, status.value, detail=error),
            "terminal": status.terminal,
            "sources": sorted(s.value for s in sources_of(status)),
            "steps": encode_steps(steps) if steps is not None else "",
            "events": [e.model_dump_json(exclude_none=True) for e in events],
        }
        async with self._guard():
            done = await self._transition(args=[json.dumps(req)])
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
        """Close the connection pool (and those to the Sentinels)."""
        await self._r.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()


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
        steps=decode_steps(h.get("steps", "[]")),
        timeline=[TimelineEvent.model_validate_json(t) for t in timeline],
        approval=_approval(h),
    )


def _approval(h: dict[str, str]) -> Approval | None:
    if "approval" not in h:
        return None
    approval = Approval.model_validate_json(h["approval"])
    if "decision" in h:
        approval = approval.model_copy(update={"decision": Decision.model_validate_json(h["decision"])})
    return approval


def _sentinel_client(url: str, options: dict[str, Any]) -> tuple[aioredis.Redis, list[aioredis.Redis]]:
    """A client for the primary that the Sentinels in the URL name (it follows failovers), and
    the clients of the Sentinels themselves."""
    from urllib.parse import unquote, urlsplit

    from redis.asyncio.sentinel import Sentinel

    parts = urlsplit(url)
    hosts = []
    shape = "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]"
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, sep, port = item.rpartition(":")
        if not sep or host.endswith(":") or item.endswith("]"):  # no port: Sentinel's own
            hosts.append((item, 26379))
        elif port.isascii() and port.isdigit() and 0 < int(port) < 65536:
            hosts.append((host, int(port)))
        else:
            raise ConfigError(
                f"Sentinel {item!r}: the port must be a number from 1 to 65535 ({shape})", where="store"
            )
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigError(f"name the Sentinel service: {shape}", where="store")
    if len(path) > 2 or (len(path) == 2 and not (path[1].isascii() and path[1].isdigit())):
        raise ConfigError(
            f"after the service name, only a database number may follow: {shape}", where="store"
        )
    password = unquote(parts.password) if parts.password else None
    sentinel = Sentinel(hosts, socket_timeout=2, socket_connect_timeout=2)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        path[0],
        db=int(path[1]) if len(path) > 1 else 0,
        password=password,
        ssl=parts.scheme.startswith("rediss"),
        **options,
    )
    return client, list(sentinel.sentinels)
