# ruff: noqa: S608 - queries are built from constant column lists and %s marks, never from values
"""The PostgreSQL store's connection pool, transactions and migrations."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

import orjson
import psycopg
import psycopg.errors
import psycopg.types.json
import psycopg_pool
import structlog

from ..errors import StoreError, StoreOpenError, StoreRefusedError
from ..redact import redact_text
from ..storable import pg_json
from . import rules
from .migrations import VERSION_TABLE, pending
from .models import (
    FINISHED,
    QUEUED,
    RUNNING,
    STEP_COLUMNS,
    JobRecord,
    JobSpec,
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

log = structlog.get_logger("weirflow.durable")

CHANNEL = "weirflow_jobs"
OUTCOME_CHANNEL = "weirflow_outcomes"  # payload: the id of a job that finished
SCHEDULE_CHANNEL = "weirflow_schedules"  # payload: a queue whose schedules changed
MIGRATION_LOCK = "weirflow:migrate"
SWEEPER_LOCK = "weirflow:sweeper"
CLAIM_LOCK_PREFIX = "weirflow:claim:"
LISTEN_RETRY_MAX_S = 5.0
#: longest a failed call waits for the pool to test its idle connections
CHECK_S = 2.0
#: between two connection attempts while the server cannot be reached (a retry delay)
PROBE_EVERY_S = 0.2
#: longest one of those attempts may take (a server that drops packets answers nothing)
PROBE_TIMEOUT_S = 2.0
#: longest a call waits for an unreachable server to come back before it fails: callers
#: (the worker's heartbeat) try again at once, and get through as soon as it is back
OUTAGE_WAIT_S = 1.0


#: every integer orjson cannot read exactly (outside [-2**63, 2**64)) has a run of at
#: least 19 digits: 20 past 2**64, 19 just below -2**63 (which orjson reads as a float)
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def json_text(value: Any) -> str:
    """``value`` as JSON text (orjson; the json module for what orjson refuses), as
    ``json_rows`` writes its rows."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):  # (a lone surrogate: refused by the server then)
        return json.dumps(value)


def json_rows(rows: Sequence[Sequence[Any]]) -> str:
    """Rows of a batched statement as one JSON array of arrays, for
    ``jsonb_array_elements`` (see ``row_columns``). psycopg adapts a Python list for an
    ``unnest`` array in Python, element by element (about 1-2 µs each: 60-70 µs a job for
    the 13 columns of a step row); one JSON text is written by orjson in C. The server
    reads it as ``jsonb``, parsed once: ``->>`` on a ``json`` element parses the element's
    text again for every column (a batch of step rows took 1.6 x as long). Text that
    PostgreSQL cannot hold (NUL) is refused by the server instead of the client."""
    try:
        return orjson.dumps(rows).decode()
    except (orjson.JSONEncodeError, TypeError):  # (a lone surrogate: refused by the server then)
        return json.dumps(rows)


def json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """A ``json``/``jsonb`` value from the server, read by orjson (in C; the json module's
    ``loads`` was most of the time psycopg spent reading a claimed job's row). orjson reads
    an integer past 64 bits as a float: text with a run of 19 digits (every such integer
    has one) is read by the json module, which keeps it exact, as is what orjson refuses."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _LONG_DIGITS.search(raw) is None:
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(raw)
    return json.loads(raw)


async def _configure(conn: Conn) -> None:
    psycopg.types.json.set_json_loads(json_loads, conn)


def row_columns(names: Sequence[str], types: dict[str, str]) -> str:
    """The select list that reads ``json_rows`` element ``e`` back into typed columns."""
    return ", ".join(
        f"(e->>{i})::{types[n]} AS {n}" if n in types else f"e->>{i} AS {n}" for i, n in enumerate(names)
    )


_UPDATE_JOB = f"UPDATE wf_jobs SET {', '.join(f'{c} = %s' for c in MUTABLE)} WHERE id = %s"
_STEP_TYPES = {"seq": "int", "attempt": "int", "run": "int", "progress": "float8"}
_STEP_TYPES.update(started_at="float8", completed_at="float8")
#: step rows given as one JSON text (``json_rows``, each row's values in ``STEP_COLUMNS``
#: order), as the relation ``u``
STEPS_JSON = (
    f"(SELECT {row_columns(STEP_COLUMNS, _STEP_TYPES)} FROM jsonb_array_elements(%s::jsonb) AS e) AS u"
)
STEPS_UPSERT = " ON CONFLICT (job_id, routine, seq) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in STEP_COLUMNS if c not in ("job_id", "routine", "seq")
)
_WRITE_STEPS = (
    f"INSERT INTO wf_steps ({', '.join(STEP_COLUMNS)})"
    f" SELECT {', '.join(f'u.{c}' for c in STEP_COLUMNS)} FROM {STEPS_JSON}{STEPS_UPSERT}"
)
# (a claim's select list: the backoff as text, which ``backoff_from`` keeps its ``Backoff``
# by, with no JSON read per claimed job)
_JOB_COLS_J = ", ".join(
    "j.backoff::text AS backoff" if c == "backoff" else f"j.{c}" for c in JOB_SELECT.split(", ")
)

Conn = psycopg.AsyncConnection[Any]


class PostgresBase:
    """The connection and the helpers every PostgresStore method uses."""

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
        self._outcomes = Outcomes()
        self._schedule_wakeups = Wakeups()  # per queue: its schedules changed
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._outcome_listener: asyncio.Task[None] | None = None  # (only once an outcome is waited on)
        self._outcome_listening = asyncio.Event()
        # submits waiting for the batch being written (``PostgresStore.submit_once``)
        self._waiting_submits: list[tuple[JobSpec, asyncio.Future[tuple[str, bool]]]] = []
        self._submitter: asyncio.Task[None] | None = None

        self._takeover = rules.TakeoverTimer()
        # while the server cannot be reached: the task that reconnects (``_reconnect``)
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # pools replaced, being closed
        # connections out with a caller, by pool (``id``): a pool that timed out with all of
        # them out is busy, not broken (``_conn``)
        self._out: collections.Counter[int] = collections.Counter()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing -------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        # One connection first, the migrations on it: a store that cannot be reached at all
        # (an unknown host, a missing database or role, a refused password) fails at once
        # with the server's reason, instead of the pool retrying it until its timeout and
        # logging every attempt. Reconnecting is for a store that was open and went away.
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                first = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        except (psycopg.Error, TimeoutError) as e:
            reason = " ".join(str(e).split()) or f"no answer in {self.connect_timeout_s:g}s"
            raise StoreOpenError(
                f"cannot open PostgreSQL store {self._where()}: {redact_text(reason, self.url)}"
            ) from None
        pool = self._new_pool()
        try:
            async with first:
                await self._migrate(first)
            await pool.open(wait=True, timeout=self.connect_timeout_s)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            await pool.close()
            reason = redact_text(" ".join(str(e).split()), self.url)
            raise StoreError(f"cannot open PostgreSQL store {self._where()}: {reason}") from e
        self._pool = pool

    def _new_pool(self) -> psycopg_pool.AsyncConnectionPool[Conn]:
        # No check (a ping) at every checkout: a connection the server dropped fails the call
        # that got it (a ``StoreError``; the pool replaces it), and that call has the store
        # reconnect (``_reconnect``), so the next calls get live ones. Autocommit: a
        # one-statement call is one round trip (``_one``), and ``conn.transaction()``
        # still makes a transaction of several.
        return psycopg_pool.AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            open=False,
            timeout=self.connect_timeout_s,
            kwargs={"autocommit": True},
            configure=_configure,
            reconnect_timeout=24 * 3600.0,
            name="weirflow",
        )

    def _where(self) -> str:
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.Error:
            return "(bad URL)"
        return f"{info.get('host', '?')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    @staticmethod
    async def _migrate(conn: Conn) -> None:
        await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (MIGRATION_LOCK,))
        try:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE}"
                " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
            )
            cur = await conn.execute(f"SELECT version FROM {VERSION_TABLE}")
            applied = {r[0] for r in await cur.fetchall()}
            for mg in pending("postgres", applied):
                async with conn.transaction():
                    await conn.execute(mg.sql.encode())
                    await conn.execute(
                        f"INSERT INTO {VERSION_TABLE} VALUES (%s, %s)", (mg.version, time.time())
                    )
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (MIGRATION_LOCK,))

    async def close(self) -> None:
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
            self._reconnecting = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        for listener in (self._listener, self._outcome_listener):
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
        self._listener = self._outcome_listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Conn]:
        """A connection in a transaction; driver and pool errors become ``StoreError``."""
        async with self._conn() as conn, conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Conn]:
        """A connection (autocommit: each statement is its own transaction); driver and pool
        errors become ``StoreError``, and a lost connection has the store reconnect.
        While the server cannot be reached, a call waits at most ``OUTAGE_WAIT_S`` for it
        to come back (instead of the pool's checkout timeout), then fails."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"store {self._where()} is not open")
        reconnecting = self._reconnecting
        if reconnecting is not None and not reconnecting.done():
            # (asyncio.wait: neither cancels the reconnection nor raises what ended it)
            await asyncio.wait({reconnecting}, timeout=OUTAGE_WAIT_S)
            if not reconnecting.done():
                raise StoreError(f"PostgreSQL store {self._where()} cannot be reached; reconnecting")
            pool = self._pool
            if pool is None:
                raise StoreError(f"store {self._where()} is not open")
        try:
            async with pool.connection() as conn:
                self._out[id(pool)] += 1
                try:
                    yield conn
                finally:
                    self._given_back(pool)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            # (PoolTimeout and PoolClosed are OperationalErrors too; a deadlock or a
            # serialization failure is one, but says nothing about the connection)
            lost = isinstance(e, psycopg.OperationalError)
            if lost and not isinstance(e, psycopg.errors.TransactionRollback):
                # A checkout timeout while every connection of the pool is out with a
                # caller is load, not a lost server: the probe still runs (a server that
                # is gone has the pool replaced), but a reachable one leaves the pool as
                # it is, so the calls waiting for its connections still get them.
                busy = self._out[id(pool)] >= self.pool_size
                self._lost(pool, timed_out=isinstance(e, psycopg_pool.PoolTimeout) and not busy)
            reason = redact_text(str(e), self.url)
            # a value the server cannot hold (a data or integrity error) fails again: say so
            kind = (
                StoreRefusedError if isinstance(e, psycopg.DataError | psycopg.IntegrityError) else StoreError
            )
            raise kind(f"PostgreSQL store {self._where()}: {type(e).__name__}: {reason}") from e

    def _given_back(self, pool: psycopg_pool.AsyncConnectionPool[Conn]) -> None:
        out = self._out
        out[id(pool)] -= 1
        if not out[id(pool)]:
            del out[id(pool)]

    def _lost(self, pool: psycopg_pool.AsyncConnectionPool[Conn], *, timed_out: bool) -> None:
        """A call on ``pool`` lost its connection or got none: reconnect (once at a time)."""
        running = self._reconnecting is not None and not self._reconnecting.done()
        if pool is self._pool and not running:
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(pool, timed_out))

    async def _reconnect(self, pool: psycopg_pool.AsyncConnectionPool[Conn], timed_out: bool) -> None:
        """Try a connection of its own every ``PROBE_EVERY_S`` until the server answers.
        If it answered at once, the pool tests its idle connections and replaces the dead
        ones (after a restart every one of them is). If it did not (an outage), or the
        pool had no connection to give although some of its connections were not out
        with a caller (``timed_out``: they are being made again, after a restart; a
        pool whose connections are all in use is only busy), the pool is replaced by a
        new one: psycopg_pool retries a failed connection with a delay that doubles from 1 s
        without bound, so after an outage of a few seconds the old pool would give no
        connection for as long again, and the leases of this store's worker would expire
        meanwhile. (Calls still on the old pool end; the ones waiting for a connection of
        it fail with ``PoolClosed`` and are tried again by their callers.)"""
        down = 0
        while True:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    probe = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                await probe.close()
            except (psycopg.Error, OSError, TimeoutError) as e:
                if down == 0:
                    log.warning("store_unreachable", store=self._where(), error=redact_text(str(e), self.url))
                down += 1
                await asyncio.sleep(PROBE_EVERY_S)  # a retry delay: the server is down
                continue
            if self._pool is not pool:  # closed meanwhile
                return
            if not down and not timed_out:
                with contextlib.suppress(Exception):  # (the failure being reported says enough)
                    async with asyncio.timeout(CHECK_S):
                        await pool.check()
                return
            fresh = self._new_pool()
            try:
                await fresh.open(wait=True, timeout=self.connect_timeout_s)
                break
            except BaseException as e:
                await fresh.close()
                if not isinstance(e, psycopg.Error | psycopg_pool.PoolTimeout):
                    raise  # (closing)
            down += 1  # down again: probe on
            await asyncio.sleep(PROBE_EVERY_S)  # a retry delay
        if self._pool is not pool:  # closed meanwhile
            await fresh.close()
            return
        self._pool = fresh
        log.warning("store_reconnected", store=self._where(), after_probes=down)
        # closed in the background: the calls waiting for this task go on at once
        closing = asyncio.get_running_loop().create_task(_close_quietly(pool))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """The rows of one statement, in one round trip (its own transaction)."""
        async with self._conn() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall() if cur.description is not None else []

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one statement (one round trip: a statement is its own transaction)."""
        return await self._one(sql, params)

    @staticmethod
    async def _event(conn: Conn, job_id: str | None, queue: str, kind: str, at: float, data: Any) -> None:
        await conn.execute(
            "INSERT INTO wf_events (job_id, queue, kind, at, data) VALUES (%s, %s, %s, %s, %s::jsonb)",
            (job_id, queue, kind, at, json.dumps(data)),
        )

    async def _change(
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
        ``takeover`` (a running job taken from its worker, its row locked ``FOR UPDATE``:
        recovered, swept, cancelled, retried): the steps its journal finished are written
        as such (``steps.taken_over``; an append still under way holds the job's row
        ``FOR SHARE``, so the journal read here has it, and later ones are refused)."""
        now = self.clock()
        await conn.execute(_UPDATE_JOB, (*mutable_values(job, pg_json), job.id))
        await self._event(conn, job.id, job.queue, kind, now, data)
        if job.status != RUNNING:
            why = rules.interrupted_why(kind, data, worker)
            taken = False
            if takeover:
                # in a savepoint: step rows it cannot write (a journal this weirflow cannot
                # read as it wrote it, a value the server refuses) must not stop the
                # takeover (a sweep takes every expired job of the store in one transaction)
                try:
                    async with conn.transaction():
                        await self._take_steps(conn, job, worker, now, why)
                    taken = True
                except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as e:
                    log.warning("takeover_steps_not_written", job=job.id, error=f"{type(e).__name__}: {e}")
            if not taken:
                await conn.execute(
                    "UPDATE wf_steps SET status = 'interrupted', completed_at = %s, error = %s"
                    " WHERE job_id = %s AND status = 'running'",
                    (now, why, job.id),
                )
        if job.status == QUEUED:
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, job.queue))
        elif job.status in FINISHED:
            await conn.execute("SELECT pg_notify(%s, %s)", (OUTCOME_CHANNEL, job.id))

    @staticmethod
    async def _take_steps(conn: Conn, job: JobRecord, worker: str | None, now: float, why: str) -> None:
        cur = await conn.execute("SELECT record FROM wf_journal WHERE job_id = %s ORDER BY pos", (job.id,))
        journal = [r[0] for r in await cur.fetchall()]
        cur = await conn.execute(f"SELECT {STEP_SELECT} FROM wf_steps WHERE job_id = %s", (job.id,))
        found = await cur.fetchall()

        def fixed_rows() -> str | None:
            """The rows to write, as one JSON text (``None``: none)."""
            rows = [step_from_row(r) for r in found]
            fixed = taken_over(job.id, journal, rows, token=job.runs, worker=worker, now=now, why=why)
            return json_rows([[getattr(s, c) for c in STEP_COLUMNS] for s in fixed]) if fixed else None

        # in a thread: a long journal (100,000 records) takes seconds to decode and its step
        # rows to make, and the loop must go on meanwhile (review s19 F)
        text = await asyncio.to_thread(fixed_rows)
        if text is not None:
            await conn.execute(_WRITE_STEPS, (text,))

    async def _locked(
        self, conn: Conn, where: str, params: Sequence[Any], *, skip_locked: bool = False
    ) -> list[JobRecord]:
        lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
        # (in id order, as every statement that locks several job rows: no deadlock)
        cur = await conn.execute(f"SELECT {JOB_SELECT} FROM wf_jobs WHERE {where} ORDER BY id {lock}", params)
        return [job_from_row(r) for r in await cur.fetchall()]

    @staticmethod
    async def _running(conn: Conn, job_ids: Sequence[str]) -> dict[str, int]:
        """The fencing token of each job of ``job_ids`` that is running, the rows locked
        ``FOR SHARE`` until the caller's transaction ends: a takeover waits for a write
        checked against them, so a stale one is refused atomically."""
        cur = await conn.execute(
            "SELECT id, runs FROM wf_jobs WHERE id = ANY(%s) AND status = 'running' ORDER BY id FOR SHARE",
            (list(job_ids),),
        )
        return {job_id: runs for job_id, runs in await cur.fetchall()}


async def _close_quietly(pool: psycopg_pool.AsyncConnectionPool[Conn]) -> None:
    with contextlib.suppress(Exception):
        await pool.close()
