# ruff: noqa: S608 - queries are built from constant column lists and %s marks, never from values
"""``PostgresStore``: the store for production and for several machines.

psycopg 3 (async) with a ``psycopg-pool`` pool whose connections are checked before
use, so a restarted server costs the caller a ``StoreError`` and the next call a
fresh connection. Claims take rows with ``FOR UPDATE SKIP LOCKED`` (workers never
wait on each other's rows); a queue with a concurrency or rate limit is claimed
under a transaction-level advisory lock on that queue so the limit holds across
workers. Submits and requeues ``NOTIFY`` a channel that idle workers ``LISTEN`` on.
Migrations run under ``pg_advisory_lock``; the sweeper under
``pg_try_advisory_xact_lock`` (one sweep at a time per database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import psycopg
import psycopg_pool
import structlog

from ..errors import JobError, StoreError
from . import rules
from .migrations import VERSION_TABLE, migrations
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

log = structlog.get_logger("weirflow.durable")

CHANNEL = "weirflow_jobs"
MIGRATION_LOCK = "weirflow:migrate"
SWEEPER_LOCK = "weirflow:sweeper"
CLAIM_LOCK_PREFIX = "weirflow:claim:"
LISTEN_RETRY_MAX_S = 5.0

_UPDATE_JOB = f"UPDATE wf_jobs SET {', '.join(f'{c} = %s' for c in MUTABLE)} WHERE id = %s"
_JOB_COLS_J = ", ".join(f"j.{c}" for c in JOB_SELECT.split(", "))

Conn = psycopg.AsyncConnection[Any]


class PostgresStore:
    """A ``Store`` in the PostgreSQL database at ``url`` (``postgresql://user@host:port/db``).

    ``pool_size`` bounds the connections of this process; ``connect_timeout_s`` is how
    long a call waits for a connection before raising ``StoreError``.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = time.time,
        pool_size: int = 8,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.clock = clock
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self._pool: psycopg_pool.AsyncConnectionPool[Conn] | None = None
        self._wakeups = Wakeups()
        self._listener: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing -------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: psycopg_pool.AsyncConnectionPool[Conn] = psycopg_pool.AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=self.connect_timeout_s,
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            reconnect_timeout=24 * 3600.0,
            name="weirflow",
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout_s)
            async with pool.connection() as conn:
                await self._migrate(conn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            await pool.close()
            raise StoreError(f"cannot open PostgreSQL store {self._where()}: {e}") from e
        self._pool = pool

    def _where(self) -> str:
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.Error:
            return "(bad URL)"
        return f"{info.get('host', '?')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    @staticmethod
    async def _migrate(conn: Conn) -> None:
        await conn.set_autocommit(True)
        await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (MIGRATION_LOCK,))
        try:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE}"
                " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
            )
            cur = await conn.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}")
            row = await cur.fetchone()
            current = row[0] if row else 0
            for mg in migrations("postgres"):
                if mg.version > current:
                    async with conn.transaction():
                        await conn.execute(mg.sql.encode())
                        await conn.execute(
                            f"INSERT INTO {VERSION_TABLE} VALUES (%s, %s)", (mg.version, time.time())
                        )
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (MIGRATION_LOCK,))
            await conn.set_autocommit(False)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        """A connection in a transaction; driver and pool errors become ``StoreError``."""
        if self._pool is None:
            raise StoreError(f"store {self._where()} is not open")
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            raise StoreError(f"PostgreSQL store {self._where()}: {type(e).__name__}: {e}") from e

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._tx() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    @staticmethod
    async def _event(conn: Conn, job_id: str | None, queue: str, kind: str, at: float, data: Any) -> None:
        await conn.execute(
            "INSERT INTO wf_events (job_id, queue, kind, at, data) VALUES (%s, %s, %s, %s, %s::jsonb)",
            (job_id, queue, kind, at, json.dumps(data)),
        )

    async def _change(self, conn: Conn, job: JobRecord, kind: str, data: dict[str, Any]) -> None:
        await conn.execute(_UPDATE_JOB, (*mutable_values(job), job.id))
        await self._event(conn, job.id, job.queue, kind, self.clock(), data)
        if job.status == QUEUED:
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, job.queue))

    async def _locked(self, conn: Conn, where: str, params: Sequence[Any]) -> list[JobRecord]:
        cur = await conn.execute(f"SELECT {JOB_SELECT} FROM wf_jobs WHERE {where} FOR UPDATE", params)
        return [job_from_row(r) for r in await cur.fetchall()]

    # -- submitting and claiming --------------------------------------------------------

    async def submit(self, spec: JobSpec) -> str:
        now = self.clock()
        async with self._tx() as conn:
            cur = await conn.execute(
                "INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, priority,"
                " run_at, idempotency_key, timeout_s, created_at) VALUES (%s, %s, %s::jsonb, %s, 'queued',"
                " %s, %s::jsonb, %s, %s, %s, %s, %s) ON CONFLICT (queue, idempotency_key) DO NOTHING"
                " RETURNING id",
                (
                    uuid.uuid4().hex,
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
            row = await cur.fetchone()
            if row is None:  # the key exists (a concurrent insert waited for the first to commit)
                cur = await conn.execute(
                    "SELECT id FROM wf_jobs WHERE queue = %s AND idempotency_key = %s",
                    (spec.queue, spec.idempotency_key),
                )
                row = await cur.fetchone()
                if row is None:
                    raise StoreError(
                        f"idempotency key {spec.idempotency_key!r} conflicts but no job holds it"
                    )
                return str(row[0])
            await self._event(conn, row[0], spec.queue, "queued", now, {"delay_s": spec.delay_s})
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, spec.queue))
        self._wakeups.notify(spec.queue)
        return str(row[0])

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
        now = self.clock()
        allowed = limit
        wait_s: float | None = None
        async with self._tx() as conn:
            if queue_concurrency is not None or rate is not None:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (CLAIM_LOCK_PREFIX + queue,))
            if queue_concurrency is not None:
                cur = await conn.execute(
                    "SELECT count(*) FROM wf_jobs WHERE queue = %s AND status = 'running'", (queue,)
                )
                (running,) = await cur.fetchone() or (0,)
                allowed = min(allowed, queue_concurrency - running)
            if rate is not None:
                await conn.execute(
                    "DELETE FROM wf_rate_claims WHERE queue = %s AND claimed_at <= %s",
                    (queue, now - rate.per_s),
                )
                cur = await conn.execute(
                    "SELECT count(*), min(claimed_at) FROM wf_rate_claims WHERE queue = %s", (queue,)
                )
                recent, oldest = await cur.fetchone() or (0, None)
                allowed = min(allowed, rate.limit - recent)
                if recent >= rate.limit and oldest is not None:
                    wait_s = max(0.0, oldest + rate.per_s - now)
            jobs: list[JobRecord] = []
            if allowed > 0:
                # one round trip: pick, take and record the claims
                cur = await conn.execute(
                    "WITH picked AS (SELECT id, seq FROM wf_jobs WHERE queue = %(q)s AND status = 'queued'"
                    " AND run_at <= %(now)s ORDER BY priority DESC, run_at, seq LIMIT %(n)s"
                    " FOR UPDATE SKIP LOCKED),"
                    " taken AS (UPDATE wf_jobs j SET status = 'running', attempt = j.attempt + 1,"
                    " runs = j.runs + 1, worker_id = %(w)s, lease_expires_at = %(lease)s,"
                    f" started_at = %(now)s FROM picked WHERE j.id = picked.id RETURNING {_JOB_COLS_J}),"
                    " ev AS (INSERT INTO wf_events (job_id, queue, kind, at, data)"
                    " SELECT id, queue, 'running', %(now)s,"
                    " jsonb_build_object('attempt', attempt, 'worker', worker_id) FROM taken)"
                    " SELECT * FROM taken",
                    {"q": queue, "now": now, "n": allowed, "w": worker_id, "lease": now + lease_s},
                )
                jobs = [job_from_row(r) for r in await cur.fetchall()]
                jobs.sort(key=lambda j: (-j.priority, j.run_at, j.created_at))
            if jobs and rate is not None:
                await conn.execute(
                    "INSERT INTO wf_rate_claims (queue, claimed_at)"
                    " SELECT %s, %s FROM generate_series(1, %s)",
                    (queue, now, len(jobs)),
                )
            if not jobs and wait_s is None:
                cur = await conn.execute(
                    "SELECT min(run_at) FROM wf_jobs WHERE queue = %s AND status = 'queued' AND run_at > %s",
                    (queue, now),
                )
                row = await cur.fetchone()
                if row is not None and row[0] is not None:
                    wait_s = row[0] - now
        return Claim(jobs, wait_s)

    # -- leases and outcomes ----------------------------------------------------------------

    async def renew(self, worker_id: str, job_ids: Sequence[str], lease_s: float) -> list[str]:
        if not job_ids:
            return []
        rows = await self._fetch(
            "UPDATE wf_jobs SET lease_expires_at = %s WHERE id = ANY(%s) AND status = 'running'"
            " AND worker_id = %s RETURNING id",
            (self.clock() + lease_s, list(job_ids), worker_id),
        )
        return [r[0] for r in rows]

    async def complete(self, worker_id: str, done: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if not done:
            return
        now = self.clock()
        async with self._tx() as conn:
            await conn.execute(
                "WITH d AS (SELECT * FROM unnest(%s::text[], %s::text[]) AS d(id, outputs)),"
                " done AS (UPDATE wf_jobs j SET status = 'completed', outputs = d.outputs::jsonb,"
                " finished_at = %s, lease_expires_at = NULL FROM d WHERE j.id = d.id"
                " AND j.status = 'running' AND j.worker_id = %s RETURNING j.id, j.queue, j.attempt)"
                " INSERT INTO wf_events (job_id, queue, kind, at, data)"
                " SELECT id, queue, 'completed', %s, jsonb_build_object('attempt', attempt) FROM done",
                ([d[0] for d in done], [json.dumps(d[1]) for d in done], now, worker_id, now),
            )

    async def fail(self, job_id: str, worker_id: str, error: str, *, retry: bool = True) -> JobRecord | None:
        async with self._tx() as conn:
            held = await self._locked(
                conn, "id = %s AND status = 'running' AND worker_id = %s", (job_id, worker_id)
            )
            if not held:
                return None
            job = held[0]
            await self._change(conn, job, *rules.after_failure(job, error, self.clock(), retry=retry))
        return job

    async def release(self, job_ids: Sequence[str], worker_id: str) -> None:
        async with self._tx() as conn:
            for job in await self._locked(
                conn, "id = ANY(%s) AND status = 'running' AND worker_id = %s", (list(job_ids), worker_id)
            ):
                await self._change(conn, job, *rules.after_release(job, self.clock()))

    async def recover(self, worker_id: str, max_stalls: int = DEFAULT_MAX_STALLS) -> list[str]:
        async with self._tx() as conn:
            jobs = await self._locked(conn, "status = 'running' AND worker_id = %s", (worker_id,))
            for job in jobs:
                why = f"worker {worker_id} restarted"
                await self._change(conn, job, *rules.after_stall(job, self.clock(), max_stalls, why))
        return [j.id for j in jobs]

    async def cancel(self, job_id: str) -> JobRecord:
        return await self._apply(job_id, lambda j: rules.cancel(j, self.clock()))

    async def retry(self, job_id: str, *, from_start: bool = False) -> JobRecord:
        return await self._apply(job_id, lambda j: rules.manual_retry(j, self.clock(), from_start=from_start))

    async def _apply(self, job_id: str, rule: Callable[[JobRecord], tuple[str, dict[str, Any]]]) -> JobRecord:
        async with self._tx() as conn:
            found = await self._locked(conn, "id = %s", (job_id,))
            if not found:
                raise JobError(f"no job {job_id!r} in the store")
            job = found[0]
            await self._change(conn, job, *rule(job))
        return job

    # -- reading ------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch(f"SELECT {JOB_SELECT} FROM wf_jobs WHERE id = %s", (job_id,))
        return job_from_row(rows[0]) if rows else None

    async def list_jobs(
        self, *, queue: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        rows = await self._fetch(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE (%s::text IS NULL OR queue = %s)"
            " AND (%s::text IS NULL OR status = %s) ORDER BY seq DESC LIMIT %s",
            (queue, queue, status, status, limit),
        )
        return [job_from_row(r) for r in rows]

    async def record_steps(self, steps: Sequence[StepRecord]) -> None:
        if not steps:
            return
        cols = STEP_SELECT.split(", ")
        key = ("job_id", "run", "routine", "seq")
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
        async with self._tx() as conn, conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO wf_steps ({STEP_SELECT}) SELECT {', '.join(['%s'] * len(cols))}"
                " WHERE EXISTS (SELECT 1 FROM wf_jobs WHERE id = %s)"
                f" ON CONFLICT (job_id, run, routine, seq) DO UPDATE SET {updates}",
                [(*(getattr(s, c) for c in cols), s.job_id) for s in steps],
            )

    async def steps(self, job_id: str) -> list[StepRecord]:
        rows = await self._fetch(
            f"SELECT {STEP_SELECT} FROM wf_steps WHERE job_id = %s ORDER BY run, started_at, routine, seq",
            (job_id,),
        )
        return [step_from_row(r) for r in rows]

    async def add_event(self, job_id: str | None, queue: str, kind: str, data: dict[str, Any]) -> None:
        async with self._tx() as conn:
            await self._event(conn, job_id, queue, kind, self.clock(), data)

    async def events(
        self, *, job_id: str | None = None, kind: str | None = None, since: float | None = None
    ) -> list[EventRecord]:
        rows = await self._fetch(
            "SELECT id, job_id, queue, kind, at, data FROM wf_events WHERE (%s::text IS NULL OR job_id = %s)"
            " AND (%s::text IS NULL OR kind = %s) AND (%s::float8 IS NULL OR at >= %s) ORDER BY id",
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
        now = self.clock()
        report = SweepReport()
        async with self._tx() as conn:
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (SWEEPER_LOCK,))
            got = await cur.fetchone()
            if not (got and got[0]):
                return None
            for job in await self._locked(conn, "status = 'running' AND lease_expires_at < %s", (now,)):
                await self._change(conn, job, *rules.after_stall(job, now, max_stalls, "lease expired"))
                (report.failed if job.status == FAILED else report.requeued).append(job.id)
            if retention is not None:
                report.deleted = await self._retain(conn, retention, now)
        return report

    @staticmethod
    async def _retain(conn: Conn, retention: Retention, now: float) -> int:
        deleted = 0
        if retention.keep_completed_s is not None:
            cur = await conn.execute(
                "DELETE FROM wf_jobs WHERE status = 'completed' AND finished_at < %s",
                (now - retention.keep_completed_s,),
            )
            deleted += cur.rowcount
        if retention.keep_completed_count is not None:
            cur = await conn.execute(
                "DELETE FROM wf_jobs WHERE id IN (SELECT id FROM wf_jobs WHERE status = 'completed'"
                " ORDER BY finished_at DESC OFFSET %s)",
                (retention.keep_completed_count,),
            )
            deleted += cur.rowcount
        if retention.keep_failed_s is not None:
            cur = await conn.execute(
                "DELETE FROM wf_jobs WHERE status IN ('failed', 'cancelled') AND finished_at < %s",
                (now - retention.keep_failed_s,),
            )
            deleted += cur.rowcount
        return deleted

    async def running_since(self, before: float) -> list[JobRecord]:
        rows = await self._fetch(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE status = %s AND started_at < %s", (RUNNING, before)
        )
        return [job_from_row(r) for r in rows]

    async def finished_counts(self, queue: str, since: float) -> tuple[int, int]:
        rows = await self._fetch(
            "SELECT count(*) FILTER (WHERE kind != 'completed'), count(*) FROM wf_events"
            " WHERE queue = %s AND at >= %s AND kind IN ('completed', 'failed', 'retrying')",
            (queue, since),
        )
        return int(rows[0][0]), int(rows[0][1])

    # -- the durable journal ----------------------------------------------------------------

    async def append_journal(self, rows: Sequence[tuple[str, str]]) -> None:
        if not rows:
            return
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO wf_journal (job_id, record) SELECT job_id, record"
                " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS r(job_id, record, n) ORDER BY n",
                ([r[0] for r in rows], [r[1] for r in rows]),
            )

    async def read_journal(self, job_id: str) -> list[str]:
        rows = await self._fetch("SELECT record FROM wf_journal WHERE job_id = %s ORDER BY pos", (job_id,))
        return [r[0] for r in rows]

    async def clear_journal(self, job_id: str) -> None:
        async with self._tx() as conn:
            await conn.execute("DELETE FROM wf_journal WHERE job_id = %s", (job_id,))

    # -- waking idle workers ---------------------------------------------------------------

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="weirflow:listen")
        await self._wakeups.wait(queue, timeout_s)

    async def _listen(self) -> None:
        """``LISTEN`` on a connection of its own; reconnects with backoff when it drops."""
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.1
                    async for note in conn.notifies():
                        self._wakeups.notify(note.payload)
            except psycopg.Error as e:
                log.warning("listen_failed", store=self._where(), error=str(e), retry_in_s=delay)
            # a lost connection may have lost notifications: wake every waiter to look
            self._wakeups.notify_all()
            await asyncio.sleep(delay)
            delay = min(LISTEN_RETRY_MAX_S, delay * 2)
