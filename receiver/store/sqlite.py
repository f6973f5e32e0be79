"""The embedded store: one SQLite file, one process, no server. The same contract as Redis.

SQLite calls run on one dedicated thread so the event loop never blocks on disk; each admission
is one transaction. The queue is the set of executions in state `queued`, oldest first.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from receiver.dedup import AdmissionPlan, Outcome
from receiver.errors import StoreUnavailable
from receiver.execution import Execution, ExecutionMeta, StepRecord, TimelineEvent, id_time_bound
from receiver.states import ExecutionStatus, sources_of
from receiver.store.base import (
    AdmitResult,
    Decided,
    HistoryQuery,
    Page,
    ResolvedUpdate,
    StoreLimits,
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
CREATE TABLE IF NOT EXISTS expiring (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
"""


def _event(at: float, event: str, *, detail: str | None = None) -> str:
    return TimelineEvent(at=at, event=event, detail=detail).model_dump_json(exclude_none=True)


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
                self._db = db
            return fn(self._db)

        try:
            return await loop.run_in_executor(self._pool, call)
        except sqlite3.OperationalError as e:
            raise StoreUnavailable("sqlite", f"{self._path}: {e}") from e

    async def ping(self) -> None:
        """Return when the database file can be read."""
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def admit(self, plan: AdmissionPlan, now: float) -> AdmitResult:
        """Decide the whole payload in one IMMEDIATE transaction."""
        lim = self._limits

        def tx(db: sqlite3.Connection) -> AdmitResult:
            result = AdmitResult()
            db.execute("BEGIN IMMEDIATE")
            try:
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
                        if c.cooldown_s > 0 and not _set_nx(
                            db, "cooldown:" + c.cooldown_key, now + c.cooldown_s
                        ):
                            result.decided.append(Decided(m.id, Outcome.COOLDOWN))
                            continue
                        db.execute(
                            "INSERT INTO executions (id, status, rule, playbook, alertname, fingerprint,"
                            " on_resolved, meta) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
                            (
                                m.id,
                                m.rule,
                                m.playbook,
                                m.alert.name,
                                m.alert.fingerprint,
                                m.on_resolved,
                                m.model_dump_json(),
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
        """Take the oldest queued execution, waiting up to wait_s for one to be admitted."""

        def take(db: sqlite3.Connection) -> str | None:
            now = time.time()
            row = db.execute(
                "UPDATE executions SET status = 'running', started_at = ? WHERE id = ("
                " SELECT id FROM executions WHERE status = 'queued' ORDER BY id LIMIT 1"
                ") AND status = 'queued' RETURNING id",
                (now,),
            ).fetchone()
            if row is None:
                return None
            _push(db, row[0], _event(now, "running"))
            return str(row[0])

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

    async def save_steps(self, execution_id: str, steps: list[StepRecord], event: TimelineEvent) -> None:
        """Write the steps and a timeline event in one transaction."""
        payload = json.dumps([s.model_dump(mode="json") for s in steps])

        def tx(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute("UPDATE executions SET steps = ? WHERE id = ?", (payload, execution_id))
                _push(db, execution_id, event.model_dump_json(exclude_none=True))

        await self._run(tx)

    async def transition(
        self, execution_id: str, status: ExecutionStatus, *, now: float, error: str | None
    ) -> bool:
        """Compare-and-set the status from any state that may move to it."""
        sources = sorted(s.value for s in sources_of(status))
        marks = ", ".join("?" for _ in sources)
        finished = now if status.terminal else None

        def tx(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                cur = db.execute(
                    "UPDATE executions SET status = ?, finished_at = COALESCE(?, finished_at),"
                    f" error = COALESCE(?, error) WHERE id = ? AND status IN ({marks})",
                    (status.value, finished, error, execution_id, *sources),
                )
                if cur.rowcount == 0:
                    return False
                _push(db, execution_id, _event(now, status.value, detail=error))
                return True

        return await self._run(tx)

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


_COLUMNS = "id, status, meta, started_at, finished_at, resolved_at, error, steps"


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
        cancel = status == "queued" and on_resolved == "cancel"
        if cancel:
            db.execute(
                "UPDATE executions SET open = 0, resolved_at = ?, status = 'cancelled', finished_at = ?,"
                " error = ? WHERE id = ?",
                (resolved_at, now, "alert resolved before the remediation started", ident),
            )
            _push(db, ident, _event(now, "cancelled", detail="alert resolved before it ran"))
        else:
            db.execute("UPDATE executions SET open = 0, resolved_at = ? WHERE id = ?", (resolved_at, ident))
            _push(db, ident, _event(now, "alert_resolved"))
        out.append(ResolvedUpdate(ident, cancelled=cancel))
    return out


def _trim(db: sqlite3.Connection, now: float, lim: StoreLimits) -> None:
    cutoff = id_time_bound(now - lim.retention_s)
    db.execute("DELETE FROM timeline WHERE execution_id < ?", (cutoff,))
    db.execute("DELETE FROM executions WHERE id < ?", (cutoff,))
    excess = db.execute("SELECT COUNT(*) FROM executions").fetchone()[0] - lim.max_executions
    if excess > 0:
        old = [r[0] for r in db.execute("SELECT id FROM executions ORDER BY id LIMIT ?", (excess,))]
        db.executemany("DELETE FROM timeline WHERE execution_id = ?", [(i,) for i in old])
        db.executemany("DELETE FROM executions WHERE id = ?", [(i,) for i in old])


def _decode(db: sqlite3.Connection, row: tuple[Any, ...]) -> Execution:
    ident, status, meta, started, finished, resolved, error, steps = row
    events = db.execute("SELECT event FROM timeline WHERE execution_id = ? ORDER BY seq", (ident,)).fetchall()
    return Execution(
        meta=ExecutionMeta.model_validate_json(meta),
        status=ExecutionStatus(status),
        started_at=started,
        finished_at=finished,
        resolved_at=resolved,
        error=error,
        steps=[StepRecord.model_validate(s) for s in json.loads(steps)],
        timeline=[TimelineEvent.model_validate_json(e[0]) for e in events],
    )
