"""The SQLite store's reads, sweeper, retention and journal records."""

# ruff: noqa: S608 - queries are built from constant column lists and "?" marks, never from values

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from ..errors import LeaseLostError, StoreError, StoreRefusedError
from . import rules
from .models import (
    FAILED,
    QUEUE_COUNTS_SQL,
    RUNNING,
    EventRecord,
    JobRecord,
    QueueCounts,
    Retention,
    StepRecord,
    SweepReport,
    queue_counts,
)
from .rows import (
    JOB_SELECT,
    STEP_SELECT,
    event_from_row,
    job_from_row,
    step_from_row,
)
from .sqlite_base import Conn, SqliteBase
from .store import DEFAULT_MAX_STALLS, SWEEPER_LOCK_TTL_S, Leases

log = structlog.get_logger("weirflow.durable")


_INSERT_JOURNAL = "INSERT INTO wf_journal (job_id, record, run, batch) VALUES (?, ?, ?, ?)"
# one job's batch, if the job runs under the token
_INSERT_FENCED = (
    "INSERT INTO wf_journal (job_id, record, run, batch) SELECT ?1, ?2, ?3, ?4"
    " WHERE EXISTS (SELECT 1 FROM wf_jobs WHERE id = ?1 AND status = 'running' AND runs = ?3)"
)
# the same, resent: not if its last row is of this batch (0 rows written is then a
# refusal or a batch held already)
_INSERT_FENCED_ONCE = (
    _INSERT_FENCED + " AND NOT EXISTS (SELECT 1 FROM wf_journal WHERE pos = (SELECT max(pos) FROM wf_journal"
    " WHERE job_id = ?1) AND ?4 IS NOT NULL AND run = ?3 AND batch >= ?4)"
)
CHECKPOINT_BYTES = 4 << 20  # journal text appended between two WAL checkpoints
CHECKPOINT_WAIT_S = 0.1  # how long a checkpoint waits for readers and writers to finish
CHECKPOINT_RETRY_S = 1.0  # between checkpoints while a reader elsewhere keeps the WAL
#: larger batches go through the store thread: an inline append blocks the loop ~4 ms a MiB
INLINE_MAX_BYTES = 1 << 20
#: bounds of the re-read that sees other processes' changes (``wait_finished``)
RECHECK_S = (0.05, 1.0)


def _held_batches(conn: Conn, batches: dict[str, int], tokens: dict[str, int]) -> set[str]:
    """The jobs of ``batches`` whose last journal row is of that batch (or a later one)
    under their token: a batch sent again, skipped (in the caller's transaction)."""
    ids = list(batches)
    # (one max(pos) per job: each an index lookup, where a GROUP BY reads all its rows)
    last = conn.execute(
        "SELECT l.job_id, l.run, l.batch FROM json_each(?) AS j JOIN wf_journal AS l"
        " ON l.pos = (SELECT max(pos) FROM wf_journal WHERE job_id = j.value)",
        (json.dumps(ids),),
    ).fetchall()
    return {
        job_id
        for job_id, run, batch in last
        if batch is not None and run == tokens.get(job_id) and batch >= batches[job_id]
    }


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

    async def record_steps(self, steps: Sequence[StepRecord]) -> list[str]:
        if not steps:
            return []
        refused: list[str] = await self._tx(self._record_steps, list(steps))
        return refused

    def _record_steps(self, conn: Conn, steps: list[StepRecord]) -> list[str]:
        runs = self._running(conn, {s.job_id for s in steps})
        refused = {s.job_id: None for s in steps if runs.get(s.job_id) != s.run}
        self._write_steps(conn, [s for s in steps if runs.get(s.job_id) == s.run])
        return list(refused)

    async def steps(self, job_id: str) -> list[StepRecord]:
        return await self._call(self._steps_of, job_id)

    def _steps_of(self, job_id: str) -> list[StepRecord]:
        """(On the store thread, rows made there too: a long job has 100,000 steps, and their
        records take seconds to make, which the loop must not wait for.)"""
        rows = self._read(
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

    # -- paused queues -------------------------------------------------------------------

    async def pause_queue(self, queue: str) -> bool:
        return await self._tx(self._pause, queue)

    def _pause(self, conn: Conn, queue: str) -> bool:
        now = self.clock()
        if not conn.execute(
            "INSERT OR IGNORE INTO wf_paused_queues (queue, paused_at) VALUES (?, ?)", (queue, now)
        ).rowcount:
            return False
        kind, data = rules.queue_change(True)
        self._event(conn, None, queue, kind, now, data)
        return True

    async def resume_queue(self, queue: str) -> bool:
        resumed = await self._tx(self._resume, queue)
        if resumed:
            self._wakeups.notify(queue)
        return resumed

    def _resume(self, conn: Conn, queue: str) -> bool:
        if not conn.execute("DELETE FROM wf_paused_queues WHERE queue = ?", (queue,)).rowcount:
            return False
        kind, data = rules.queue_change(False)
        self._event(conn, None, queue, kind, self.clock(), data)
        return True

    async def assigned_nodes(self) -> list[str]:
        rows = await self._call(
            self._read,
            "SELECT DISTINCT node FROM wf_jobs WHERE node IS NOT NULL AND status IN ('queued', 'running')"
            " ORDER BY node",
        )
        return [r[0] for r in rows]

    async def paused_queues(self) -> list[str]:
        rows = await self._call(self._read, "SELECT queue FROM wf_paused_queues ORDER BY queue")
        return [r[0] for r in rows]

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
        # the sweeper lease: take it if free, expired or ours (``rules.may_sweep``)
        got = conn.execute(
            "INSERT INTO wf_locks (name, owner, expires_at) VALUES ('sweeper', ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
            " WHERE wf_locks.owner = excluded.owner OR wf_locks.expires_at <= ? RETURNING owner",
            (owner, now + lock_ttl_s, now),
        ).fetchone()
        if got is None:
            return None
        report = self._stall_expired(conn, now, max_stalls)
        if retention is not None:
            report.deleted = self._retain(conn, retention, now)
        return report

    def _stall_expired(
        self, conn: Conn, now: float, max_stalls: int, queue: str | None = None
    ) -> SweepReport:
        """Take back the running jobs (of ``queue``) whose lease expired before ``now``
        (``rules.lease_expired``), each by ``rules.after_stall``."""
        report = SweepReport()
        rows = conn.execute(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE status = 'running' AND lease_expires_at < ?"
            " AND (? IS NULL OR queue = ?)",
            (now, queue, queue),
        ).fetchall()
        for row in rows:
            job = job_from_row(row)
            worker = job.worker_id
            change = rules.after_stall(job, now, max_stalls, "lease expired")
            self._change(conn, job, *change, worker, takeover=True)
            (report.failed if job.status == FAILED else report.requeued).append(job.id)
        return report

    async def clean(self, retention: Retention) -> int:
        return await self._tx(lambda conn: self._retain(conn, retention, self.clock()))

    @staticmethod
    def _retain(conn: Conn, retention: Retention, now: float) -> int:
        completed_before, keep, failed_before = rules.retention_cutoffs(retention, now)
        deleted = 0
        if completed_before is not None:
            deleted += conn.execute(
                "DELETE FROM wf_jobs WHERE status = 'completed' AND finished_at < ?", (completed_before,)
            ).rowcount
        if keep is not None:
            deleted += conn.execute(
                "DELETE FROM wf_jobs WHERE status = 'completed' AND id NOT IN (SELECT id FROM wf_jobs"
                " WHERE status = 'completed' ORDER BY finished_at DESC LIMIT ?)",
                (keep,),
            ).rowcount
        if failed_before is not None:
            deleted += conn.execute(
                "DELETE FROM wf_jobs WHERE status IN ('failed', 'cancelled') AND finished_at < ?",
                (failed_before,),
            ).rowcount
        return deleted

    async def running_since(self, before: float) -> list[JobRecord]:
        rows = await self._call(
            self._read,
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE status = ? AND started_at < ?",
            (RUNNING, before),
        )
        return [job_from_row(r) for r in rows]

    async def queue_counts(self) -> list[QueueCounts]:
        now = self.clock()
        return queue_counts(await self._call(self._read, QUEUE_COUNTS_SQL.format(p="?"), (now, now)))

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

    async def append_journal(
        self,
        rows: Sequence[tuple[str, str]],
        *,
        tokens: Leases | None = None,
        batches: Mapping[str, int] | None = None,
        resent: bool = False,
    ) -> list[str]:
        """Inline when the batch is small and the write lock is free at once, else on the
        store thread (see the ``sqlite`` module)."""
        if not rows:
            return []
        batch = list(rows)
        held = dict(tokens) if tokens is not None else None
        numbers = dict(batches) if batches and tokens is not None else {}
        size = sum(len(record) for _, record in batch)
        try:
            refused = self._append_inline(batch, held, numbers, resent) if size <= INLINE_MAX_BYTES else None
            if refused is None:
                refused = await self._tx(self._append_journal, batch, held, numbers, resent)
        except StoreError as e:
            if held is None and _no_job(e):  # (unfenced: the rows' foreign key to wf_jobs)
                await self._refuse_missing(batch)
            raise
        self._unchecked += size
        if (
            self._unchecked >= CHECKPOINT_BYTES
            and self._journal_conn is not None  # (not closing)
            and (self._checkpoint is None or self._checkpoint.done())
        ):
            self._unchecked = 0
            self._checkpoint = asyncio.get_running_loop().create_task(self._checkpoint_wal())
        return refused

    async def _refuse_missing(self, rows: list[tuple[str, str]]) -> None:
        """An unfenced batch that failed for jobs not in the store: ``StoreRefusedError``
        naming them (sent again it would fail again; nothing of it was written)."""
        ids = sorted({job_id for job_id, _ in rows})
        found = await self._call(
            self._read, f"SELECT id FROM wf_jobs WHERE id IN ({', '.join('?' * len(ids))})", ids
        )
        missing = sorted(set(ids) - {r[0] for r in found})
        if missing:
            raise StoreRefusedError(f"journal records for jobs not in the store: {', '.join(missing)}")

    def _append_inline(
        self,
        rows: list[tuple[str, str]],
        tokens: dict[str, int] | None,
        batches: dict[str, int],
        resent: bool = False,
    ) -> list[str] | None:
        """Append on this thread and return the refused job ids; ``None`` if another
        connection holds the write lock."""
        conn = self._journal_conn
        if conn is None:
            return None
        try:
            if len(rows) == 1 and tokens is None:  # one statement: a transaction of its own
                conn.execute(_INSERT_JOURNAL, (*rows[0], None, None))
                refused = []
            elif len(rows) == 1 and tokens is not None:
                (job_id, record), token = rows[0], tokens.get(rows[0][0], -1)
                n = batches.get(job_id)
                once = resent and n is not None
                written = conn.execute(
                    _INSERT_FENCED_ONCE if once else _INSERT_FENCED, (job_id, record, token, n)
                ).rowcount
                held_already = once and not written and self._running(conn, {job_id}).get(job_id) == token
                refused = [] if written or held_already else [job_id]
            else:
                conn.execute("BEGIN IMMEDIATE")
                refused = self._append_journal(conn, rows, tokens, batches, resent)
                conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.rollback()
            if not isinstance(e, sqlite3.Error):
                raise
            if e.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):  # (extended codes)
                return None
            raise StoreError(f"{self.url}: {type(e).__name__}: {e}") from e
        return refused

    def _append_journal(
        self,
        conn: Conn,
        rows: list[tuple[str, str]],
        tokens: dict[str, int] | None,
        batches: dict[str, int] | None = None,
        resent: bool = False,
    ) -> list[str]:
        refused: set[str] = set()
        if tokens is not None:
            runs = self._running(conn, {job_id for job_id, _ in rows})
            refused = {
                job_id for job_id, _ in rows if job_id not in runs or runs[job_id] != tokens.get(job_id)
            }
        held = _held_batches(conn, batches, tokens) if resent and batches and tokens is not None else set()
        skip = refused | held
        if skip:
            rows = [row for row in rows if row[0] not in skip]
        numbers = batches or {}
        token_of: dict[str, int] = tokens if tokens is not None else {}
        conn.executemany(_INSERT_JOURNAL, [(j, r, token_of.get(j), numbers.get(j)) for j, r in rows])
        return sorted(refused)

    async def _checkpoint_wal(self) -> None:
        """Copy the WAL's pages into the database and truncate the WAL, so that it does not
        grow without bound (the journal's inline connection never checkpoints).

        ``TRUNCATE`` waits for writers and readers to finish, blocking new writers while it
        waits, so it runs on a connection of its own that waits at most
        ``CHECKPOINT_WAIT_S``: long enough for this process's journal appends (inline ones
        find the lock taken and queue behind it), and not as long as a reader in another
        process might take. While such a reader holds the WAL it cannot be emptied: the
        checkpoint is tried again every ``CHECKPOINT_RETRY_S`` until it is, so the file
        goes back down once the reader is gone, also when no append comes to trigger
        one. ``PASSIVE`` would block nobody, but while appends go on it never catches up
        with them."""
        while self._journal_conn is not None:  # (not closing)
            try:
                if await self._call(self._checkpoint_now):
                    return
            except StoreError as e:
                log.warning("wal_checkpoint_failed", store=self.url, error=str(e))
            await asyncio.sleep(CHECKPOINT_RETRY_S)  # a retry delay: a reader elsewhere holds the WAL

    def _checkpoint_now(self) -> bool:
        """One ``TRUNCATE`` checkpoint; whether it emptied the WAL."""
        conn = sqlite3.connect(self.path, timeout=CHECKPOINT_WAIT_S, isolation_level=None)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        return not busy

    async def read_journal(self, job_id: str) -> list[str]:
        rows = await self._call(
            self._read, "SELECT record FROM wf_journal WHERE job_id = ? ORDER BY pos", (job_id,)
        )
        return [r[0] for r in rows]

    async def clear_journal(self, job_id: str, *, token: int | None = None) -> None:
        await self._tx(self._clear_journal, job_id, token)

    def _clear_journal(self, conn: Conn, job_id: str, token: int | None) -> None:
        if token is not None and self._running(conn, {job_id}).get(job_id) != token:
            raise LeaseLostError([job_id], f"not running under token {token}")
        conn.execute("DELETE FROM wf_journal WHERE job_id = ?", (job_id,))
        # the from-start retry is consumed with its journal: a later takeover resumes the new run's
        conn.execute("UPDATE wf_jobs SET from_start = 0 WHERE id = ? AND from_start <> 0", (job_id,))


def _no_job(e: StoreError) -> bool:
    """Whether ``e`` is SQLite's refusal of a journal row whose job is not in ``wf_jobs``."""
    cause = e.__cause__
    return isinstance(cause, sqlite3.IntegrityError) and "FOREIGN KEY" in str(cause)
