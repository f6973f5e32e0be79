"""The embedded store: one SQLite file, one process, no server. The same contract as Redis.

SQLite calls run on one dedicated thread so the event loop never blocks on disk; each admission
is one transaction. The queue is the set of executions in state `queued`, oldest first.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from receiver.dedup import AdmissionPlan, Candidate, Outcome
from receiver.errors import Overloaded, StoreUnavailable
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

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    rule TEXT NOT NULL,
    playbook TEXT NOT NULL,
    alertname TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    on_resolved TEXT NOT NULL,
    open INTEGER NOT NULL DEFAULT 1,
    meta TEXT NOT NULL,
    started_at REAL,
    finished_at REAL,
    resolved_at REAL,
    error TEXT,
    steps TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS rate (
    rule TEXT NOT NULL,
    at REAL NOT NULL,
    id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_rule ON rate (rule, at);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_status ON executions (status, id);
CREATE INDEX IF NOT EXISTS executions_fingerprint ON executions (fingerprint, id);
CREATE INDEX IF NOT EXISTS executions_rule ON executions (rule, id);
CREATE INDEX IF NOT EXISTS executions_playbook ON executions (playbook, id);
CREATE INDEX IF NOT EXISTS executions_alertname ON executions (alertname, id);
CREATE TABLE IF NOT EXISTS timeline (
    execution_id TEXT NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_execution ON timeline (execution_id, seq);
CREATE TABLE IF NOT EXISTS suppressed (
    bucket INTEGER NOT NULL,
    rule TEXT NOT NULL,
    playbook TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (bucket, rule, playbook, reason)
);
CREATE TABLE IF NOT EXISTS playbook_versions (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS expiring (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
"""


# Columns added after the first release; a database made before gets them on open.
_ADDED_COLUMNS = {
    "approval": "TEXT",
    "decision": "TEXT",
    "approval_deadline": "REAL",
    "lock": "TEXT NOT NULL DEFAULT ''",
    "lock_policy": "TEXT NOT NULL DEFAULT 'wait'",
    "lock_wait": "INTEGER NOT NULL DEFAULT 0",  # a waiting_lock event was recorded
    "owner": "TEXT",  # the worker running it
    "heartbeat_at": "REAL",  # when that worker last said it was alive
}


def _migrate(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(executions)")}
    for column, kind in _ADDED_COLUMNS.items():
        if column not in have:
            db.execute(f"ALTER TABLE executions ADD COLUMN {column} {kind}")
    db.execute(
        "CREATE INDEX IF NOT EXISTS executions_deadline ON executions (approval_deadline)"
        " WHERE status = 'waiting_approval'"
    )


def _event(at: float, event: str, *, step: str | None = None, detail: str | None = None) -> str:
    return TimelineEvent(at=at, event=event, step=step, detail=detail).model_dump_json(exclude_none=True)


class SQLiteStore:
    """Store in one SQLite file (or `:memory:`), for a single receiver process."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, limits: StoreLimits | None = None) -> None:
        self._path = str(path)
        self._limits = limits or StoreLimits()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None
        self._wake = asyncio.Event()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()

        def call() -> T:
            if self._db is None:
                if self._path != ":memory:":
                    Path(self._path).parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                _migrate(db)
                self._db = db
            return fn(self._db)

        try:
            return await loop.run_in_executor(self._pool, call)
        except sqlite3.OperationalError as e:
            raise StoreUnavailable("sqlite", f"{self._path}: {e}") from e

    async def ping(self) -> None:
        """Return when the database file can be read."""
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def seen(self, keys: list[str], now: float) -> list[bool]:
        """Which seen keys exist and have not expired."""

        def read(db: sqlite3.Connection) -> list[bool]:
            found = set()
            for k in keys:
                row = db.execute(
                    "SELECT 1 FROM expiring WHERE key = ? AND expires_at > ?", ("seen:" + k, now)
                ).fetchone()
                if row:
                    found.add(k)
            return [k in found for k in keys]

        return await self._run(read)

    async def admit(self, plan: AdmissionPlan, now: float) -> AdmitResult:
        """Decide the whole payload in one IMMEDIATE transaction."""
        lim = self._limits

        def tx(db: sqlite3.Connection) -> AdmitResult:
            result = AdmitResult()
            db.execute("BEGIN IMMEDIATE")
            try:
                wanted = sum(len(a.candidates) for a in plan.alerts)
                if lim.max_queued > 0 and wanted > 0:
                    backlog = db.execute(
                        "SELECT COUNT(*) FROM executions"
                        " WHERE status IN ('queued', 'running', 'rolling_back')"
                    ).fetchone()[0]
                    if backlog + wanted > lim.max_queued:
                        raise Overloaded(backlog, lim.max_queued)
                db.execute("DELETE FROM expiring WHERE expires_at <= ?", (now,))
                for a in plan.alerts:
                    if not _set_nx(db, "seen:" + a.seen_key, now + lim.idempotency_ttl_s):
                        result.decided.extend(Decided(c.meta.id, Outcome.DUPLICATE) for c in a.candidates)
                        continue
                    if a.resolved:
                        resolved_at = a.alert.ends_at.timestamp() if a.alert.ends_at else now
                        result.resolved.extend(_resolve(db, a.alert.fingerprint, resolved_at, now))
                        continue
                    for c in a.candidates:
                        m = c.meta
                        verdict = _breaker(db, c, now)
                        cooling = verdict is None and c.cooldown_s > 0
                        if cooling and not _set_nx(db, "cooldown:" + c.cooldown_key, now + c.cooldown_s):
                            verdict = Outcome.COOLDOWN
                        if verdict is not None:
                            result.decided.append(Decided(m.id, verdict))
                            continue
                        if c.rate_max > 0:
                            db.execute(
                                "INSERT INTO rate (rule, at, id) VALUES (?, ?, ?)", (m.rule, now, m.id)
                            )
                        db.execute(
                            "INSERT INTO executions (id, status, rule, playbook, alertname, fingerprint,"
                            " on_resolved, meta, lock, lock_policy)"
                            " VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                m.id,
                                m.rule,
                                m.playbook,
                                m.alert.name,
                                m.alert.fingerprint,
                                m.on_resolved,
                                m.model_dump_json(),
                                m.lock,
                                m.lock_policy,
                            ),
                        )
                        _push(db, m.id, _event(now, "queued", detail=f"rule {m.rule} matched"))
                        result.decided.append(Decided(m.id, Outcome.ADMITTED))
                _trim(db, now, lim)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return result

        result = await self._run(tx)
        if any(d.outcome is Outcome.ADMITTED for d in result.decided):
            self._wake.set()
        return result

    async def claim(self, consumer: str, wait_s: float) -> Execution | None:
        """Take a running execution whose worker went silent, else the oldest queued one that
        its lock lets start; wait up to wait_s for one to be admitted."""
        idle = self._limits.reclaim_after_s

        def take(db: sqlite3.Connection) -> str | None:
            now = time.time()
            with _transaction(db):
                row = db.execute(
                    "UPDATE executions SET owner = ?, heartbeat_at = ? WHERE id = ("
                    " SELECT id FROM executions WHERE status IN ('running', 'rolling_back')"
                    " AND COALESCE(heartbeat_at, 0) < ? ORDER BY id LIMIT 1) RETURNING id",
                    (consumer, now, now - idle),
                ).fetchone()
                if row is not None:
                    _push(db, row[0], _event(now, "resumed", detail=taken_over(consumer)))
                    return str(row[0])
                return _start_next(db, consumer, now)

        self._wake.clear()  # before looking, so an admission while we look still wakes us
        ident = await self._run(take)
        if ident is None:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
            except TimeoutError:
                return None
            ident = await self._run(take)
            if ident is None:
                return None
        return await self.get(ident)

    async def heartbeat(self, execution_id: str, consumer: str) -> Lease:
        """Stamp heartbeat_at if this consumer still owns the execution."""

        def beat(db: sqlite3.Connection) -> Lease:
            with _transaction(db):
                row = db.execute(
                    "UPDATE executions SET heartbeat_at = ? WHERE id = ? AND owner = ? RETURNING status",
                    (time.time(), execution_id, consumer),
                ).fetchone()
                if row is not None:
                    return Lease(status=ExecutionStatus(row[0]), held=True)
                row = db.execute("SELECT status FROM executions WHERE id = ?", (execution_id,)).fetchone()
                return Lease(status=None if row is None else ExecutionStatus(row[0]), held=row is None)

        return await self._run(beat)

    async def release(self, execution_id: str, consumer: str, *, now: float) -> bool:
        """Clear heartbeat_at if this consumer owns the execution, so a claim takes it at once."""
        event = _event(now, "handed_back", detail=f"worker {consumer} is stopping")

        def tx(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                cur = db.execute(
                    "UPDATE executions SET heartbeat_at = 0 WHERE id = ? AND owner = ?"
                    " AND status IN ('running', 'rolling_back')",
                    (execution_id, consumer),
                )
                if cur.rowcount == 0:
                    return False
                _push(db, execution_id, event)
                return True

        released = await self._run(tx)
        if released:
            self._wake.set()
        return released

    async def note_outcome(self, rule: str, *, failed: bool, failures: int, per_s: float, now: float) -> bool:
        """Count the rule's failures in a row; open its breaker (True) at `failures`."""
        key = "fails:" + rule

        def tx(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                if not failed:
                    db.execute("DELETE FROM counters WHERE key = ?", (key,))
                    return False
                db.execute(
                    "INSERT INTO counters (key, value) VALUES (?, 1)"
                    " ON CONFLICT(key) DO UPDATE SET value = value + 1",
                    (key,),
                )
                n = db.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()[0]
                if n < failures:
                    return False
                db.execute("DELETE FROM counters WHERE key = ?", (key,))
                db.execute("DELETE FROM expiring WHERE key = ?", ("breaker:" + rule,))
                _set_nx(db, "breaker:" + rule, now + per_s)
                return True

        return await self._run(tx)

    async def reset_breaker(self, rule: str) -> bool:
        """Close the rule's breaker and forget its window and failures; True if it was open."""

        def tx(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                cur = db.execute("DELETE FROM expiring WHERE key = ?", ("breaker:" + rule,))
                db.execute("DELETE FROM rate WHERE rule = ?", (rule,))
                db.execute("DELETE FROM counters WHERE key = ?", ("fails:" + rule,))
                return cur.rowcount > 0

        return await self._run(tx)

    async def backlog(self) -> int:
        """Executions queued, running or rolling back."""

        def read(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT COUNT(*) FROM executions WHERE status IN ('queued', 'running', 'rolling_back')"
            ).fetchone()
            return int(row[0])

        return await self._run(read)

    async def breakers(self, rules: list[str], now: float) -> dict[str, float]:
        """The rules whose breaker is open, with when it closes by itself."""

        def read(db: sqlite3.Connection) -> dict[str, float]:
            out = {}
            for rule in rules:
                row = db.execute(
                    "SELECT expires_at FROM expiring WHERE key = ? AND expires_at > ?",
                    ("breaker:" + rule, now),
                ).fetchone()
                if row:
                    out[rule] = float(row[0])
            return out

        return await self._run(read)

    async def count_suppressed(self, counts: Mapping[tuple[str, str, str], int], now: float) -> None:
        """Add the counts to now's bucket, and drop buckets older than the history."""
        bucket = stats_bucket(now)
        rows = [(bucket, rule, playbook, reason, n) for (rule, playbook, reason), n in counts.items()]
        expired = bucket - self._limits.retention_s - STATS_BUCKET_S

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO suppressed (bucket, rule, playbook, reason, count) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (bucket, rule, playbook, reason) DO UPDATE SET count = count + excluded.count",
                rows,
            )
            db.execute("DELETE FROM suppressed WHERE bucket < ?", (expired,))

        await self._run(write)

    async def suppressed_since(self, since: float) -> dict[tuple[str, str, str], int]:
        """The counts of the buckets from `since`'s on, summed."""

        def read(db: sqlite3.Connection) -> dict[tuple[str, str, str], int]:
            rows = db.execute(
                "SELECT rule, playbook, reason, SUM(count) FROM suppressed WHERE bucket >= ?"
                " GROUP BY rule, playbook, reason",
                (stats_bucket(since),),
            ).fetchall()
            return {(r[0], r[1], r[2]): int(r[3]) for r in rows}

        return await self._run(read)

    async def publish_playbooks(self, definitions: Sequence[PlaybookDefinition]) -> None:
        """INSERT OR IGNORE each definition: a version already kept stays as is."""
        rows = [(d.name, d.version, d.definition) for d in definitions]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR IGNORE INTO playbook_versions (name, version, definition) VALUES (?, ?, ?)",
                rows,
            )

        await self._run(write)

    async def playbook_definition(self, name: str, version: str) -> str | None:
        """The kept definition of that version, if any."""

        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT definition FROM playbook_versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            return str(row[0]) if row else None

        return await self._run(read)

    async def rate_counts(self, windows: Mapping[str, float], now: float) -> dict[str, int]:
        """Each rule's rows in `rate` within its window."""

        def read(db: sqlite3.Connection) -> dict[str, int]:
            return {
                rule: int(
                    db.execute(
                        "SELECT COUNT(*) FROM rate WHERE rule = ? AND at >= ?", (rule, now - per_s)
                    ).fetchone()[0]
                )
                for rule, per_s in windows.items()
            }

        return await self._run(read)

    async def cooldowns(self, keys: list[str], now: float) -> dict[str, float]:
        """The cooldown keys not yet expired, with when each ends."""

        def read(db: sqlite3.Connection) -> dict[str, float]:
            out = {}
            for key in keys:
                row = db.execute(
                    "SELECT expires_at FROM expiring WHERE key = ? AND expires_at > ?",
                    ("cooldown:" + key, now),
                ).fetchone()
                if row:
                    out[key] = float(row[0])
            return out

        return await self._run(read)

    async def await_approval(self, execution_id: str, approval: Approval, *, now: float) -> bool:
        """running -> waiting_approval with the request and its deadline; the owner is cleared."""
        event = _event(
            now, ExecutionStatus.WAITING_APPROVAL.value, step=approval.step, detail=approval.message or None
        )

        def tx(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                cur = db.execute(
                    "UPDATE executions SET status = 'waiting_approval', approval = ?, decision = NULL,"
                    " approval_deadline = ?, owner = NULL WHERE id = ? AND status = 'running'",
                    (approval.model_dump_json(), approval.deadline, execution_id),
                )
                if cur.rowcount == 0:
                    return False
                _push(db, execution_id, event)
                return True

        return await self._run(tx)

    async def decide(self, execution_id: str, decision: Decision, *, now: float) -> bool:
        """waiting_approval -> queued with the decision; wakes a worker."""
        event = _event(now, decision.verdict.value, detail=decision.describe())

        def tx(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                cur = db.execute(
                    "UPDATE executions SET status = 'queued', decision = ?, approval_deadline = NULL"
                    " WHERE id = ? AND status = 'waiting_approval'",
                    (decision.model_dump_json(), execution_id),
                )
                if cur.rowcount == 0:
                    return False
                _push(db, execution_id, event)
                return True

        decided = await self._run(tx)
        if decided:
            self._wake.set()
        return decided

    async def expired_approvals(self, now: float) -> list[str]:
        """Waiting executions whose approval deadline is at or before now."""

        def read(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT id FROM executions WHERE status = 'waiting_approval' AND approval_deadline <= ?",
                (now,),
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self._run(read)

    async def save_steps(
        self, execution_id: str, steps: list[StepRecord], events: Sequence[TimelineEvent]
    ) -> None:
        """Write the steps and the timeline events in one transaction."""
        payload = encode_steps(steps)
        encoded = [e.model_dump_json(exclude_none=True) for e in events]

        def tx(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute("UPDATE executions SET steps = ? WHERE id = ?", (payload, execution_id))
                for event in encoded:
                    _push(db, execution_id, event)

        await self._run(tx)

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
        """Compare-and-set the status from any state that may move to it, after writing the
        runner's last checkpoint when given."""
        sources = sorted(s.value for s in sources_of(status))
        marks = ", ".join("?" for _ in sources)
        finished = now if status.terminal else None
        payload = encode_steps(steps) if steps is not None else None
        encoded = [e.model_dump_json(exclude_none=True) for e in events]

        def tx(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                if payload is not None:
                    db.execute("UPDATE executions SET steps = ? WHERE id = ?", (payload, execution_id))
                for event in encoded:
                    _push(db, execution_id, event)
                cur = db.execute(
                    "UPDATE executions SET status = ?, finished_at = COALESCE(?, finished_at),"
                    f" error = COALESCE(?, error) WHERE id = ? AND status IN ({marks})",
                    (status.value, finished, error, execution_id, *sources),
                )
                if cur.rowcount == 0:
                    return False
                _push(db, execution_id, _event(now, status.value, detail=error))
                if status.terminal:
                    _ended(db, execution_id)
                return True

        moved = await self._run(tx)
        if moved and status.terminal:
            self._wake.set()  # a lock may have been freed
        return moved

    async def status(self, execution_id: str) -> ExecutionStatus | None:
        """The status column."""

        def read(db: sqlite3.Connection) -> ExecutionStatus | None:
            row = db.execute("SELECT status FROM executions WHERE id = ?", (execution_id,)).fetchone()
            return None if row is None else ExecutionStatus(row[0])

        return await self._run(read)

    async def get(self, execution_id: str) -> Execution | None:
        """One execution with its timeline."""

        def read(db: sqlite3.Connection) -> Execution | None:
            row = db.execute(f"SELECT {_COLUMNS} FROM executions WHERE id = ?", (execution_id,)).fetchone()
            return None if row is None else _decode(db, row)

        return await self._run(read)

    async def history(self, query: HistoryQuery) -> Page:
        """A page of executions, newest first, filtered in SQL."""
        where = ["1 = 1"]
        args: list[Any] = []
        for column, value in (
            ("alertname", query.alertname),
            ("rule", query.rule),
            ("playbook", query.playbook),
            ("status", query.status.value if query.status else None),
            ("fingerprint", query.fingerprint),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.since is not None:
            where.append("id >= ?")
            args.append(id_time_bound(query.since))
        if query.until is not None:
            where.append("id < ?")
            args.append(id_time_bound(query.until + 0.001))
        if query.cursor is not None:
            where.append("id < ?")
            args.append(query.cursor)
        sql = f"SELECT {_COLUMNS} FROM executions WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        args.append(query.limit)

        def read(db: sqlite3.Connection) -> list[Execution]:
            return [_decode(db, row) for row in db.execute(sql, args).fetchall()]

        items = await self._run(read)
        cursor = items[-1].id if len(items) == query.limit else None
        return Page(items=items, next_cursor=cursor)

    async def close(self) -> None:
        """Close the database and its thread."""

        def shut(db: sqlite3.Connection) -> None:
            db.close()

        if self._db is not None:
            await self._run(shut)
            self._db = None
        self._pool.shutdown(wait=True)


_COLUMNS = "id, status, meta, started_at, finished_at, resolved_at, error, steps, approval, decision"
# How many queued executions one claim looks through for one its lock lets start.
CLAIM_SCAN = 1000


def _start_next(db: sqlite3.Connection, consumer: str, now: float) -> str | None:
    """Start the oldest queued execution whose lock is free or already its own (inside a
    transaction). Those behind a held lock wait (policy wait) or are cancelled (policy skip)."""
    rows = db.execute(
        "SELECT id, lock, lock_policy, lock_wait FROM executions WHERE status = 'queued' ORDER BY id LIMIT ?",
        (CLAIM_SCAN,),
    ).fetchall()
    for ident, lock, policy, waited in rows:
        if lock:
            held = db.execute(
                "SELECT holder, status FROM locks LEFT JOIN executions ON executions.id = holder"
                " WHERE name = ?",
                (lock,),
            ).fetchone()
            if (
                held is not None
                and held[0] != ident
                and (held[1] is None or ExecutionStatus(held[1]).terminal)
            ):
                held = None  # its holder ended or expired without passing it on
            if held is None:
                db.execute("INSERT OR REPLACE INTO locks (name, holder) VALUES (?, ?)", (lock, ident))
            elif held[0] != ident:
                why = f"lock {lock} is held by execution {held[0]}"
                if policy == "skip":
                    db.execute(
                        "UPDATE executions SET status = 'cancelled', finished_at = ?, error = ? WHERE id = ?",
                        (now, f"skipped: {why}", ident),
                    )
                    _push(db, ident, _event(now, "cancelled", detail=f"skipped: {why}"))
                elif not waited:
                    db.execute("UPDATE executions SET lock_wait = 1 WHERE id = ?", (ident,))
                    _push(db, ident, _event(now, "waiting_lock", detail=why))
                continue
        db.execute(
            "UPDATE executions SET status = 'running', started_at = COALESCE(started_at, ?), owner = ?,"
            " heartbeat_at = ? WHERE id = ?",
            (now, consumer, now, ident),
        )
        _push(db, ident, _event(now, "running", detail=f"worker {consumer}"))
        return str(ident)
    return None


def _ended(db: sqlite3.Connection, execution_id: str) -> None:
    """What every move to a terminal state does besides the status: free the lock, forget any
    approval deadline."""
    db.execute("DELETE FROM locks WHERE holder = ?", (execution_id,))
    db.execute("UPDATE executions SET approval_deadline = NULL WHERE id = ?", (execution_id,))


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _set_nx(db: sqlite3.Connection, key: str, expires_at: float) -> bool:
    cur = db.execute("INSERT OR IGNORE INTO expiring (key, expires_at) VALUES (?, ?)", (key, expires_at))
    return cur.rowcount == 1


def _breaker(db: sqlite3.Connection, c: Candidate, now: float) -> Outcome | None:
    """CIRCUIT_OPEN while the rule's breaker is open; RATE_LIMITED (opening it) when the rule ran
    rate_max times within rate_per_s; None otherwise."""
    if c.rate_max <= 0:
        return None
    rule = c.meta.rule
    db.execute("DELETE FROM rate WHERE rule = ? AND at < ?", (rule, now - c.rate_per_s))
    if db.execute("SELECT 1 FROM expiring WHERE key = ?", ("breaker:" + rule,)).fetchone():
        return Outcome.CIRCUIT_OPEN
    if db.execute("SELECT COUNT(*) FROM rate WHERE rule = ?", (rule,)).fetchone()[0] >= c.rate_max:
        _set_nx(db, "breaker:" + rule, now + c.rate_per_s)
        return Outcome.RATE_LIMITED
    return None


def _push(db: sqlite3.Connection, execution_id: str, event: str) -> None:
    db.execute("INSERT INTO timeline (execution_id, event) VALUES (?, ?)", (execution_id, event))


def _resolve(
    db: sqlite3.Connection, fingerprint: str, resolved_at: float, now: float
) -> list[ResolvedUpdate]:
    out: list[ResolvedUpdate] = []
    rows = db.execute(
        "SELECT id, status, on_resolved FROM executions WHERE fingerprint = ? AND open = 1",
        (fingerprint,),
    ).fetchall()
    for ident, status, on_resolved in rows:
        cancel = status in ("queued", "waiting_approval") and on_resolved == "cancel"
        if cancel:
            db.execute(
                "UPDATE executions SET open = 0, resolved_at = ?, status = 'cancelled', finished_at = ?,"
                " error = ? WHERE id = ?",
                (resolved_at, now, "alert resolved before the remediation started", ident),
            )
            _push(db, ident, _event(now, "cancelled", detail="alert resolved before it ran"))
            _ended(db, ident)
        else:
            db.execute("UPDATE executions SET open = 0, resolved_at = ? WHERE id = ?", (resolved_at, ident))
            _push(db, ident, _event(now, "alert_resolved"))
        out.append(ResolvedUpdate(ident, cancelled=cancel))
    return out


def _trim(db: sqlite3.Connection, now: float, lim: StoreLimits) -> None:
    cutoff = id_time_bound(now - lim.retention_s)
    ended = ", ".join(f"'{s.value}'" for s in TERMINAL)
    db.execute(
        "DELETE FROM timeline WHERE execution_id IN"
        f" (SELECT id FROM executions WHERE id < ? AND status IN ({ended}))",
        (cutoff,),
    )
    db.execute(f"DELETE FROM executions WHERE id < ? AND status IN ({ended})", (cutoff,))
    excess = db.execute("SELECT COUNT(*) FROM executions").fetchone()[0] - lim.max_executions
    if excess > 0:  # only ended executions leave: live ones must never be lost to the cap
        old = [
            r[0]
            for r in db.execute(
                f"SELECT id FROM executions WHERE status IN ({ended}) ORDER BY id LIMIT ?", (excess,)
            )
        ]
        db.executemany("DELETE FROM timeline WHERE execution_id = ?", [(i,) for i in old])
        db.executemany("DELETE FROM executions WHERE id = ?", [(i,) for i in old])


def _decode(db: sqlite3.Connection, row: tuple[Any, ...]) -> Execution:
    ident, status, meta, started, finished, resolved, error, steps, approval, decision = row
    events = db.execute("SELECT event FROM timeline WHERE execution_id = ? ORDER BY seq", (ident,)).fetchall()
    return Execution(
        meta=ExecutionMeta.model_validate_json(meta),
        status=ExecutionStatus(status),
        started_at=started,
        finished_at=finished,
        resolved_at=resolved,
        error=error,
        steps=decode_steps(steps),
        timeline=[TimelineEvent.model_validate_json(e[0]) for e in events],
        approval=_approval(approval, decision),
    )


def _approval(approval: str | None, decision: str | None) -> Approval | None:
    if approval is None:
        return None
    a = Approval.model_validate_json(approval)
    if decision is not None:
        a = a.model_copy(update={"decision": Decision.model_validate_json(decision)})
    return a
