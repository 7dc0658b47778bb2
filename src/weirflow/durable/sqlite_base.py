"""The SQLite store's connection: one thread that owns it, transactions, migrations."""

# ruff: noqa: S608 - queries are built from constant column lists and "?" marks, never from values

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

from ..errors import JobError, StoreError, StoreRefusedError
from ..runtime.gil import thread_call
from . import rules
from .migrations import VERSION_TABLE, pending, sqlite_statements
from .models import (
    RUNNING,
    STEP_COLUMNS,
    JobRecord,
    StepRecord,
)
from .rows import (
    JOB_SELECT,
    MUTABLE,
    STEP_SELECT,
    job_from_row,
    mutable_values,
    step_from_row,
)
from .steps import taken_over
from .store import Clock
from .wakeup import Outcomes, Wakeups

T = TypeVar("T")
Conn = sqlite3.Connection

_UPDATE_JOB = f"UPDATE wf_jobs SET {', '.join(f'{c} = ?' for c in MUTABLE)} WHERE id = ?"
_READ_JOURNAL = "SELECT record FROM wf_journal WHERE job_id = ? ORDER BY pos"
_READ_STEPS = f"SELECT {STEP_SELECT} FROM wf_steps WHERE job_id = ?"
_STEP_KEY = ("job_id", "routine", "seq")
_UPSERT_STEP = (
    f"INSERT INTO wf_steps ({STEP_SELECT}) VALUES ({', '.join('?' * len(STEP_COLUMNS))})"
    " ON CONFLICT (job_id, routine, seq) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in STEP_COLUMNS if c not in _STEP_KEY)
)


class SqliteBase:
    """The connection and the helpers every SqliteStore method uses."""

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
        self._journal_conn: Conn | None = None  # used on the event loop's thread only
        self._unchecked = 0  # journal text appended since the last WAL checkpoint
        self._checkpoint: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._wakeups = Wakeups()
        self._outcomes = Outcomes()
        self._schedule_wakeups = Wakeups()  # per queue: its schedules changed
        self._changed: list[str] = []  # jobs the current transaction changed (store thread)
        self._takeover = rules.TakeoverTimer()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing -------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise StoreError(f"store {self.url} is not open")
        try:
            with thread_call():  # a busy loop must let this thread have the GIL
                return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as e:
            raise StoreError(f"{self.url}: {type(e).__name__}: {e}") from e
        except OverflowError as e:  # an integer past 64 bits: it fails again
            raise StoreRefusedError(f"{self.url}: {type(e).__name__}: {e}") from e

    async def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in a write transaction on the store thread; once it is
        committed, whoever waits on a job it changed is woken."""
        result: T
        result, changed = await self._call(self._write_noting, fn, *args)
        for job_id in changed:
            self._outcomes.notify(job_id)
        return result

    def _write_noting(self, fn: Callable[..., T], *args: Any) -> tuple[T, list[str]]:
        """``_write``, and the ids of the jobs it changed (``_changed``)."""
        self._changed = []
        try:
            return self._write(fn, *args), self._changed
        finally:
            self._changed = []

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
        except BaseException as e:
            self._thread.shutdown(wait=False)
            self._thread = None
            if isinstance(e, OSError | sqlite3.Error):
                raise StoreError(f"cannot open SQLite store {self.path}: {e}") from e
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
        # the journal's own connection: never waits for the write lock, never checkpoints
        journal = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        journal.execute(f"PRAGMA synchronous={self.synchronous}")
        journal.execute("PRAGMA foreign_keys=ON")
        journal.execute("PRAGMA wal_autocheckpoint=0")
        self._journal_conn = journal

    @staticmethod
    def _migrate(conn: Conn) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, applied_at REAL)"
        )
        applied = {r[0] for r in conn.execute(f"SELECT version FROM {VERSION_TABLE}")}
        for mg in pending("sqlite", applied):
            for statement in sqlite_statements(mg.sql):
                conn.execute(statement)
            conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (?, ?)", (mg.version, time.time()))

    async def close(self) -> None:
        if self._thread is None:
            return
        conn, journal = self._conn, self._journal_conn
        self._journal_conn = None  # (appends from now on take no new checkpoint)
        if self._checkpoint is not None:
            self._checkpoint.cancel()  # (it may be waiting to try again)
            await asyncio.gather(self._checkpoint, return_exceptions=True)

        def _close() -> None:
            for c in (journal, conn):
                if c is not None:
                    c.close()

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

    def _change(
        self,
        conn: Conn,
        job: JobRecord,
        kind: str,
        data: dict[str, Any],
        worker: str | None = None,
        *,
        takeover: bool = False,
    ) -> None:
        """Write a rule's change of ``job`` and its event; a job that left ``running`` (its
        worker was ``worker``) has no running step any more (they become interrupted).
        ``takeover`` (a running job taken from its worker: recovered, swept, cancelled,
        retried): the steps its journal finished are written as such (``steps.taken_over``)."""
        now = self.clock()
        conn.execute(_UPDATE_JOB, (*mutable_values(job), job.id))
        self._changed.append(job.id)
        self._event(conn, job.id, job.queue, kind, now, data)
        if job.status == RUNNING:
            return
        why = rules.interrupted_why(kind, data, worker)
        if not takeover:
            self._interrupt_steps(conn, job.id, now, why)
            return
        journal = [r[0] for r in conn.execute(_READ_JOURNAL, (job.id,))]
        rows = [step_from_row(r) for r in conn.execute(_READ_STEPS, (job.id,))]
        fixed = taken_over(job.id, journal, rows, token=job.runs, worker=worker, now=now, why=why)
        self._write_steps(conn, fixed)

    @staticmethod
    def _write_steps(conn: Conn, steps: Sequence[StepRecord]) -> None:
        """Insert or update ``steps`` (unchecked: the caller checked their job's token)."""
        conn.executemany(_UPSERT_STEP, [tuple(getattr(s, c) for c in STEP_COLUMNS) for s in steps])

    @staticmethod
    def _interrupt_steps(conn: Conn, job_id: str, now: float, why: str) -> None:
        conn.execute(
            "UPDATE wf_steps SET status = 'interrupted', completed_at = ?, error = ?"
            " WHERE job_id = ? AND status = 'running'",
            (now, why, job_id),
        )

    @staticmethod
    def _running(conn: Conn, job_ids: set[str]) -> dict[str, int]:
        """The fencing token of each job of ``job_ids`` that is running (read in the caller's
        transaction, so a write checked against it is refused atomically)."""
        if not job_ids:
            return {}
        ids = list(job_ids)
        marks = ", ".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT id, runs FROM wf_jobs WHERE id IN ({marks}) AND status = 'running'", ids
        ).fetchall()
        return {job_id: runs for job_id, runs in rows}
