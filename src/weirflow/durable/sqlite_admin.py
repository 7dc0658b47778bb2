"""The SQLite store's reads, sweeper, retention and journal records."""

# ruff: noqa: S608 - queries are built from constant column lists and "?" marks, never from values

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

import structlog

from ..errors import StoreError
from . import rules
from .models import (
    FAILED,
    RUNNING,
    EventRecord,
    JobRecord,
    Retention,
    StepRecord,
    SweepReport,
)
from .rows import (
    JOB_SELECT,
    STEP_SELECT,
    event_from_row,
    job_from_row,
    step_from_row,
)
from .sqlite_base import Conn, SqliteBase
from .store import DEFAULT_MAX_STALLS, SWEEPER_LOCK_TTL_S

log = structlog.get_logger("weirflow.durable")


_STEP_MARKS = ", ".join("?" * len(STEP_SELECT.split(", ")))
_INSERT_JOURNAL = "INSERT INTO wf_journal (job_id, record) VALUES (?, ?)"
CHECKPOINT_BYTES = 4 << 20  # journal text appended between two WAL checkpoints
CHECKPOINT_WAIT_S = 0.1  # how long a checkpoint waits for readers and writers to finish
#: larger batches go through the store thread: an inline append blocks the loop ~4 ms a MiB
INLINE_MAX_BYTES = 1 << 20
#: bounds of the re-read that sees other processes' changes (``wait_finished``)
RECHECK_S = (0.05, 1.0)


class SqliteAdmin(SqliteBase):
    """Reading, sweeping and the journal's records (see ``sqlite.SqliteStore``)."""

    # -- reading ------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._call(self._read, f"SELECT {JOB_SELECT} FROM wf_jobs WHERE id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: str | None = None,
        flow: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        rows = await self._call(
            self._read,
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE (? IS NULL OR queue = ?) AND (? IS NULL OR status = ?)"
            " AND (? IS NULL OR flow = ?) ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            (queue, queue, status, status, flow, flow, limit, offset),
        )
        return [job_from_row(r) for r in rows]

    async def record_steps(self, steps: Sequence[StepRecord]) -> None:
        if steps:
            await self._tx(self._record_steps, list(steps))

    @staticmethod
    def _record_steps(conn: Conn, steps: list[StepRecord]) -> None:
        conn.executemany(
            f"INSERT OR REPLACE INTO wf_steps ({STEP_SELECT})"
            f" SELECT {_STEP_MARKS} WHERE EXISTS (SELECT 1 FROM wf_jobs WHERE id = ?)",
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

    async def clean(self, retention: Retention) -> int:
        return await self._tx(lambda conn: self._retain(conn, retention, self.clock()))

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

    async def wait_finished(self, job_id: str, timeout_s: float | None) -> JobRecord | None:
        """Woken at once by changes made through this store object; another process's are
        seen at a bounded re-read that doubles from 0.05 s to 1 s (SQLite has no
        notifications between processes)."""
        return await self._outcomes.wait_finished(self.get, job_id, timeout_s, recheck_s=RECHECK_S)

    # -- the durable journal ----------------------------------------------------------------

    async def append_journal(self, rows: Sequence[tuple[str, str]]) -> None:
        """Inline when the batch is small and the write lock is free at once, else on the
        store thread (see the ``sqlite`` module)."""
        if not rows:
            return
        batch = list(rows)
        size = sum(len(record) for _, record in batch)
        if size > INLINE_MAX_BYTES or not self._append_inline(batch):
            await self._tx(self._append_journal, batch)
        self._unchecked += size
        if (
            self._unchecked >= CHECKPOINT_BYTES
            and self._journal_conn is not None  # (not closing)
            and (self._checkpoint is None or self._checkpoint.done())
        ):
            self._unchecked = 0
            self._checkpoint = asyncio.get_running_loop().create_task(self._checkpoint_wal())

    def _append_inline(self, rows: list[tuple[str, str]]) -> bool:
        """Append on this thread; ``False`` if another connection holds the write lock."""
        conn = self._journal_conn
        if conn is None:
            return False
        try:
            if len(rows) == 1:  # one statement: a transaction of its own
                conn.execute(_INSERT_JOURNAL, rows[0])
            else:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT_JOURNAL, rows)
                conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.rollback()
            if not isinstance(e, sqlite3.Error):
                raise
            if e.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):  # (extended codes)
                return False
            raise StoreError(f"{self.url}: {type(e).__name__}: {e}") from e
        return True

    @staticmethod
    def _append_journal(conn: Conn, rows: list[tuple[str, str]]) -> None:
        conn.executemany(_INSERT_JOURNAL, rows)

    async def _checkpoint_wal(self) -> None:
        """Copy the WAL's pages into the database and start the WAL over, so that it does
        not grow without bound (the journal's inline connection never checkpoints).

        ``RESTART`` waits for writers and readers to finish, blocking new writers while it
        waits, so it runs on a connection of its own that waits at most
        ``CHECKPOINT_WAIT_S``: long enough for this process's journal appends (inline ones
        find the lock taken and queue behind it), and not as long as a reader in another
        process might take. That reader's pages are copied next time. ``PASSIVE`` would block
        nobody, but while appends go on it never catches up with them."""
        try:
            await self._call(self._checkpoint_now)
        except StoreError as e:
            log.warning("wal_checkpoint_failed", store=self.url, error=str(e))

    def _checkpoint_now(self) -> None:
        conn = sqlite3.connect(self.path, timeout=CHECKPOINT_WAIT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        finally:
            conn.close()

    async def read_journal(self, job_id: str) -> list[str]:
        rows = await self._call(
            self._read, "SELECT record FROM wf_journal WHERE job_id = ? ORDER BY pos", (job_id,)
        )
        return [r[0] for r in rows]

    async def clear_journal(self, job_id: str) -> None:
        await self._tx(lambda conn: conn.execute("DELETE FROM wf_journal WHERE job_id = ?", (job_id,)))
