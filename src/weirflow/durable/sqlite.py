"""``SqliteStore``: the embedded default — one file, WAL mode, nothing to start.

Every call runs on one dedicated thread that owns the connection, so the event
loop never blocks on the database. Writes take ``BEGIN IMMEDIATE`` (the write
lock up front, so two processes never deadlock upgrading a read lock) and wait
up to ``busy_timeout_s`` for another process's write. ``synchronous=NORMAL`` in
WAL mode survives a process crash (``kill -9``) but may lose the last commits on
power loss; pass ``synchronous="FULL"`` to trade speed for that.

Idle workers are woken at once by submits made through the same store object;
other processes' submits are seen at the worker's next bounded wait.
"""

# ruff: noqa: S608 - queries are built from constant column lists and "?" marks, never from values

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import JobError, StoreError
from . import rules
from .migrations import VERSION_TABLE, migrations, sqlite_statements
from .models import (
    FAILED,
    QUEUED,
    RUNNING,
    Claim,
    EventRecord,
    JobRecord,
    JobSpec,
    Rate,
    Retention,
    StepRecord,
    SweepReport,
    backoff_to_json,
)
from .rows import (
    JOB_SELECT,
    MUTABLE,
    STEP_SELECT,
    event_from_row,
    job_from_row,
    mutable_values,
    step_from_row,
)
from .store import DEFAULT_MAX_STALLS, SWEEPER_LOCK_TTL_S, Clock
from .wakeup import Wakeups

T = TypeVar("T")
Conn = sqlite3.Connection

_UPDATE_JOB = f"UPDATE wf_jobs SET {', '.join(f'{c} = ?' for c in MUTABLE)} WHERE id = ?"


class SqliteStore:
    """A ``Store`` in the SQLite file ``path`` (created with its folder if missing)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = time.time,
        busy_timeout_s: float = 30.0,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.clock = clock
        self.busy_timeout_s = busy_timeout_s
        self.synchronous = synchronous
        self._conn: Conn | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._wakeups = Wakeups()

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing -------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise StoreError(f"store {self.url} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as e:
            raise StoreError(f"{self.url}: {type(e).__name__}: {e}") from e

    async def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in a write transaction on the store thread."""
        result: T = await self._call(self._write, fn, *args)
        return result

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a ``BEGIN IMMEDIATE`` transaction (on the store thread)."""
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return result

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        assert self._conn is not None
        return self._conn.execute(sql, params).fetchall()

    async def open(self) -> None:
        if self._thread is not None:
            return
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="weirflow-sqlite")
        try:
            await self._call(self._open)
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise

    def _open(self) -> None:
        if self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        self._write(self._migrate)

    @staticmethod
    def _migrate(conn: Conn) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, applied_at REAL)"
        )
        row = conn.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()
        current = row[0] or 0
        for mg in migrations("sqlite"):
            if mg.version > current:
                for statement in sqlite_statements(mg.sql):
                    conn.execute(statement)
                conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (?, ?)", (mg.version, time.time()))

    async def close(self) -> None:
        if self._thread is None:
            return
        conn = self._conn

        def _close() -> None:
            if conn is not None:
                conn.close()

        await asyncio.get_running_loop().run_in_executor(self._thread, _close)
        self._thread.shutdown(wait=True)
        self._thread = None
        self._conn = None

    @staticmethod
    def _event(
        conn: Conn, job_id: str | None, queue: str, kind: str, at: float, data: dict[str, Any]
    ) -> None:
        conn.execute(
            "INSERT INTO wf_events (job_id, queue, kind, at, data) VALUES (?, ?, ?, ?, ?)",
            (job_id, queue, kind, at, json.dumps(data)),
        )

    @staticmethod
    def _load(conn: Conn, job_id: str) -> JobRecord:
        row = conn.execute(f"SELECT {JOB_SELECT} FROM wf_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"no job {job_id!r} in the store")
        return job_from_row(row)

    def _change(self, conn: Conn, job: JobRecord, kind: str, data: dict[str, Any]) -> None:
        conn.execute(_UPDATE_JOB, (*mutable_values(job), job.id))
        self._event(conn, job.id, job.queue, kind, self.clock(), data)

    # -- submitting and claiming --------------------------------------------------------

    async def submit(self, spec: JobSpec) -> str:
        job_id = await self._tx(self._submit, spec)
        self._wakeups.notify(spec.queue)
        return job_id

    def _submit(self, conn: Conn, spec: JobSpec) -> str:
        if spec.idempotency_key is not None:
            row = conn.execute(
                "SELECT id FROM wf_jobs WHERE queue = ? AND idempotency_key = ?",
                (spec.queue, spec.idempotency_key),
            ).fetchone()
            if row is not None:
                return str(row[0])
        now = self.clock()
        job_id = uuid.uuid4().hex
        conn.execute(
            "INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, priority, run_at,"
            " idempotency_key, timeout_s, created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                spec.flow,
                json.dumps(spec.inputs),
                spec.queue,
                spec.max_attempts,
                backoff_to_json(spec.backoff),
                spec.priority,
                now + spec.delay_s,
                spec.idempotency_key,
                spec.timeout_s,
                now,
            ),
        )
        self._event(conn, job_id, spec.queue, "queued", now, {"delay_s": spec.delay_s})
        return job_id

    async def claim(
        self,
        queue: str,
        worker_id: str,
        *,
        limit: int,
        lease_s: float,
        queue_concurrency: int | None = None,
        rate: Rate | None = None,
    ) -> Claim:
        return await self._tx(self._claim, queue, worker_id, limit, lease_s, queue_concurrency, rate)

    def _claim(
        self,
        conn: Conn,
        queue: str,
        worker_id: str,
        limit: int,
        lease_s: float,
        queue_concurrency: int | None,
        rate: Rate | None,
    ) -> Claim:
        now = self.clock()
        allowed = limit
        wait_s: float | None = None
        if queue_concurrency is not None:
            (running,) = conn.execute(
                "SELECT count(*) FROM wf_jobs WHERE queue = ? AND status = 'running'", (queue,)
            ).fetchone()
            allowed = min(allowed, queue_concurrency - running)
        if rate is not None:
            conn.execute(
                "DELETE FROM wf_rate_claims WHERE queue = ? AND claimed_at <= ?", (queue, now - rate.per_s)
            )
            recent, oldest = conn.execute(
                "SELECT count(*), min(claimed_at) FROM wf_rate_claims WHERE queue = ?", (queue,)
            ).fetchone()
            allowed = min(allowed, rate.limit - recent)
            if recent >= rate.limit:
                wait_s = max(0.0, oldest + rate.per_s - now)
        jobs: list[JobRecord] = []
        if allowed > 0:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM wf_jobs WHERE queue = ? AND status = 'queued' AND run_at <= ?"
                    " ORDER BY priority DESC, run_at, rowid LIMIT ?",
                    (queue, now, allowed),
                )
            ]
            if ids:
                marks = ", ".join("?" * len(ids))
                rows = conn.execute(
                    "UPDATE wf_jobs SET status = 'running', attempt = attempt + 1, runs = runs + 1,"
                    " worker_id = ?,"
                    f" lease_expires_at = ?, started_at = ? WHERE id IN ({marks}) RETURNING {JOB_SELECT}",
                    (worker_id, now + lease_s, now, *ids),
                ).fetchall()
                order = {job_id: i for i, job_id in enumerate(ids)}
                jobs = sorted((job_from_row(r) for r in rows), key=lambda j: order[j.id])
                conn.executemany(
                    "INSERT INTO wf_events (job_id, queue, kind, at, data) VALUES (?, ?, 'running', ?, ?)",
                    [
                        (j.id, queue, now, json.dumps({"attempt": j.attempt, "worker": worker_id}))
                        for j in jobs
                    ],
                )
                if rate is not None:
                    conn.executemany(
                        "INSERT INTO wf_rate_claims (queue, claimed_at) VALUES (?, ?)",
                        [(queue, now)] * len(jobs),
                    )
        if len(jobs) < limit and wait_s is None:
            (nxt,) = conn.execute(
                "SELECT min(run_at) FROM wf_jobs WHERE queue = ? AND status = 'queued' AND run_at > ?",
                (queue, now),
            ).fetchone()
            if nxt is not None:
                wait_s = nxt - now
        return Claim(jobs, wait_s)

    # -- leases and outcomes ----------------------------------------------------------------

    async def renew(self, worker_id: str, job_ids: Sequence[str], lease_s: float) -> list[str]:
        if not job_ids:
            return []
        return await self._tx(self._renew, worker_id, list(job_ids), lease_s)

    def _renew(self, conn: Conn, worker_id: str, job_ids: list[str], lease_s: float) -> list[str]:
        marks = ", ".join("?" * len(job_ids))
        rows = conn.execute(
            f"UPDATE wf_jobs SET lease_expires_at = ? WHERE id IN ({marks})"
            " AND status = 'running' AND worker_id = ? RETURNING id",
            (self.clock() + lease_s, *job_ids, worker_id),
        ).fetchall()
        return [r[0] for r in rows]

    async def complete(self, worker_id: str, done: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if done:
            await self._tx(self._complete, worker_id, list(done))

    def _complete(self, conn: Conn, worker_id: str, done: list[tuple[str, dict[str, Any]]]) -> None:
        now = self.clock()
        for job_id, outputs in done:
            row = conn.execute(
                "UPDATE wf_jobs SET status = 'completed', outputs = ?, finished_at = ?"
                ", lease_expires_at = NULL"
                " WHERE id = ? AND status = 'running' AND worker_id = ?"
                " RETURNING queue, attempt",
                (json.dumps(outputs), now, job_id, worker_id),
            ).fetchone()
            if row is not None:
                self._event(conn, job_id, row[0], "completed", now, {"attempt": row[1]})

    def _held(self, conn: Conn, job_id: str, worker_id: str) -> JobRecord | None:
        row = conn.execute(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE id = ? AND status = 'running' AND worker_id = ?",
            (job_id, worker_id),
        ).fetchone()
        return job_from_row(row) if row is not None else None

    async def fail(self, job_id: str, worker_id: str, error: str, *, retry: bool = True) -> JobRecord | None:
        job = await self._tx(self._fail, job_id, worker_id, error, retry)
        if job is not None and job.status == QUEUED:
            self._wakeups.notify(job.queue)
        return job

    def _fail(self, conn: Conn, job_id: str, worker_id: str, error: str, retry: bool) -> JobRecord | None:
        job = self._held(conn, job_id, worker_id)
        if job is not None:
            self._change(conn, job, *rules.after_failure(job, error, self.clock(), retry=retry))
        return job

    async def release(self, job_ids: Sequence[str], worker_id: str) -> None:
        await self._tx(self._release, list(job_ids), worker_id)

    def _release(self, conn: Conn, job_ids: list[str], worker_id: str) -> None:
        for job_id in job_ids:
            job = self._held(conn, job_id, worker_id)
            if job is not None:
                self._change(conn, job, *rules.after_release(job, self.clock()))

    async def recover(self, worker_id: str, max_stalls: int = DEFAULT_MAX_STALLS) -> list[str]:
        return await self._tx(self._recover, worker_id, max_stalls)

    def _recover(self, conn: Conn, worker_id: str, max_stalls: int) -> list[str]:
        rows = conn.execute(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE status = 'running' AND worker_id = ?",
            (worker_id,),
        ).fetchall()
        now = self.clock()
        for row in rows:
            job = job_from_row(row)
            self._change(conn, job, *rules.after_stall(job, now, max_stalls, f"worker {worker_id} restarted"))
        return [job_from_row(r).id for r in rows]

    async def cancel(self, job_id: str) -> JobRecord:
        return await self._tx(self._apply, job_id, lambda j: rules.cancel(j, self.clock()))

    async def retry(self, job_id: str, *, from_start: bool = False) -> JobRecord:
        job = await self._tx(
            self._apply,
            job_id,
            lambda j: rules.manual_retry(j, self.clock(), from_start=from_start),
        )
        self._wakeups.notify(job.queue)
        return job

    def _apply(
        self, conn: Conn, job_id: str, rule: Callable[[JobRecord], tuple[str, dict[str, Any]]]
    ) -> JobRecord:
        job = self._load(conn, job_id)
        self._change(conn, job, *rule(job))
        return job

    # -- reading ------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._call(self._read, f"SELECT {JOB_SELECT} FROM wf_jobs WHERE id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    async def list_jobs(
        self, *, queue: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        rows = await self._call(
            self._read,
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE (? IS NULL OR queue = ?) AND (? IS NULL OR status = ?)"
            " ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (queue, queue, status, status, limit),
        )
        return [job_from_row(r) for r in rows]

    async def record_steps(self, steps: Sequence[StepRecord]) -> None:
        if steps:
            await self._tx(self._record_steps, list(steps))

    @staticmethod
    def _record_steps(conn: Conn, steps: list[StepRecord]) -> None:
        conn.executemany(
            f"INSERT OR REPLACE INTO wf_steps ({STEP_SELECT})"
            " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM wf_jobs WHERE id = ?)",
            [(*(getattr(s, c) for c in STEP_SELECT.split(", ")), s.job_id) for s in steps],
        )

    async def steps(self, job_id: str) -> list[StepRecord]:
        rows = await self._call(
            self._read,
            f"SELECT {STEP_SELECT} FROM wf_steps WHERE job_id = ? ORDER BY run, started_at, routine, seq",
            (job_id,),
        )
        return [step_from_row(r) for r in rows]

    async def add_event(self, job_id: str | None, queue: str, kind: str, data: dict[str, Any]) -> None:
        await self._tx(self._event, job_id, queue, kind, self.clock(), data)

    async def events(
        self, *, job_id: str | None = None, kind: str | None = None, since: float | None = None
    ) -> list[EventRecord]:
        rows = await self._call(
            self._read,
            "SELECT id, job_id, queue, kind, at, data FROM wf_events WHERE (? IS NULL OR job_id = ?)"
            " AND (? IS NULL OR kind = ?) AND (? IS NULL OR at >= ?) ORDER BY id",
            (job_id, job_id, kind, kind, since, since),
        )
        return [event_from_row(r) for r in rows]

    # -- sweeping and alerts -------------------------------------------------------------

    async def sweep(
        self,
        owner: str,
        *,
        max_stalls: int = DEFAULT_MAX_STALLS,
        retention: Retention | None = None,
        lock_ttl_s: float = SWEEPER_LOCK_TTL_S,
    ) -> SweepReport | None:
        report = await self._tx(self._sweep, owner, max_stalls, retention, lock_ttl_s)
        if report is not None and report.requeued:
            for queue in {q for q in await self._queues_of(report.requeued)}:
                self._wakeups.notify(queue)
        return report

    async def _queues_of(self, job_ids: list[str]) -> list[str]:
        marks = ", ".join("?" * len(job_ids))
        rows = await self._call(
            self._read, f"SELECT DISTINCT queue FROM wf_jobs WHERE id IN ({marks})", job_ids
        )
        return [r[0] for r in rows]

    def _sweep(
        self, conn: Conn, owner: str, max_stalls: int, retention: Retention | None, lock_ttl_s: float
    ) -> SweepReport | None:
        now = self.clock()
        # the sweeper lease: take it if free, expired or ours
        got = conn.execute(
            "INSERT INTO wf_locks (name, owner, expires_at) VALUES ('sweeper', ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
            " WHERE wf_locks.owner = excluded.owner OR wf_locks.expires_at < ? RETURNING owner",
            (owner, now + lock_ttl_s, now),
        ).fetchone()
        if got is None:
            return None
        report = SweepReport()
        rows = conn.execute(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE status = 'running' AND lease_expires_at < ?",
            (now,),
        ).fetchall()
        for row in rows:
            job = job_from_row(row)
            self._change(conn, job, *rules.after_stall(job, now, max_stalls, "lease expired"))
            (report.failed if job.status == FAILED else report.requeued).append(job.id)
        if retention is not None:
            report.deleted = self._retain(conn, retention, now)
        return report

    @staticmethod
    def _retain(conn: Conn, retention: Retention, now: float) -> int:
        deleted = 0
        if retention.keep_completed_s is not None:
            deleted += conn.execute(
                "DELETE FROM wf_jobs WHERE status = 'completed' AND finished_at < ?",
                (now - retention.keep_completed_s,),
            ).rowcount
        if retention.keep_completed_count is not None:
            deleted += conn.execute(
                "DELETE FROM wf_jobs WHERE status = 'completed' AND id NOT IN (SELECT id FROM wf_jobs"
                " WHERE status = 'completed' ORDER BY finished_at DESC LIMIT ?)",
                (retention.keep_completed_count,),
            ).rowcount
        if retention.keep_failed_s is not None:
            deleted += conn.execute(
                "DELETE FROM wf_jobs WHERE status IN ('failed', 'cancelled') AND finished_at < ?",
                (now - retention.keep_failed_s,),
            ).rowcount
        return deleted

    async def running_since(self, before: float) -> list[JobRecord]:
        rows = await self._call(
            self._read,
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE status = ? AND started_at < ?",
            (RUNNING, before),
        )
        return [job_from_row(r) for r in rows]

    async def finished_counts(self, queue: str, since: float) -> tuple[int, int]:
        rows = await self._call(
            self._read,
            "SELECT count(*) FILTER (WHERE kind != 'completed'), count(*) FROM wf_events"
            " WHERE queue = ? AND at >= ? AND kind IN ('completed', 'failed', 'retrying')",
            (queue, since),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        await self._wakeups.wait(queue, timeout_s)

    # -- the durable journal ----------------------------------------------------------------

    async def append_journal(self, rows: Sequence[tuple[str, str]]) -> None:
        if rows:
            await self._tx(self._append_journal, list(rows))

    @staticmethod
    def _append_journal(conn: Conn, rows: list[tuple[str, str]]) -> None:
        conn.executemany("INSERT INTO wf_journal (job_id, record) VALUES (?, ?)", rows)

    async def read_journal(self, job_id: str) -> list[str]:
        rows = await self._call(
            self._read, "SELECT record FROM wf_journal WHERE job_id = ? ORDER BY pos", (job_id,)
        )
        return [r[0] for r in rows]

    async def clear_journal(self, job_id: str) -> None:
        await self._tx(lambda conn: conn.execute("DELETE FROM wf_journal WHERE job_id = ?", (job_id,)))
