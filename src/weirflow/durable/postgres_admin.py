# ruff: noqa: S608 - queries are built from constant column lists and %s marks, never from values
"""The PostgreSQL store's reads, sweeper, retention, journal records and LISTEN."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from ..errors import LeaseLostError, StoreRefusedError
from . import rules
from .models import (
    FAILED,
    QUEUE_COUNTS_SQL,
    RUNNING,
    STEP_COLUMNS,
    EventRecord,
    JobRecord,
    QueueCounts,
    Retention,
    StepRecord,
    SweepReport,
    queue_counts,
)
from .postgres_base import (
    CHANNEL,
    LISTEN_RETRY_MAX_S,
    OUTCOME_CHANNEL,
    SCHEDULE_CHANNEL,
    STEPS_JSON,
    STEPS_UPSERT,
    SWEEPER_LOCK,
    Conn,
    PostgresBase,
    json_rows,
    log,
)
from .rows import (
    JOB_SELECT,
    STEP_SELECT,
    event_from_row,
    job_from_row,
    step_from_row,
)
from .store import DEFAULT_MAX_STALLS, SWEEPER_LOCK_TTL_S, Leases

#: ``record_steps``: the rows (one array per column), joined to the jobs running under
#: their run (each row's job locked ``FOR SHARE``); returns the ``(job, run)`` written
_RECORD_STEPS = (
    f"INSERT INTO wf_steps ({', '.join(STEP_COLUMNS)})"
    f" SELECT {', '.join(f'u.{c}' for c in STEP_COLUMNS)} FROM {STEPS_JSON}"
    " JOIN wf_jobs j ON j.id = u.job_id AND j.status = 'running' AND j.runs = u.run"
    f" ORDER BY u.job_id FOR SHARE OF j{STEPS_UPSERT} RETURNING job_id, run"
)

# the journal rows of jobs running under their tokens, in the order given (``ord``: ``pos``
# follows it), with their batch numbers; returns the ids held
_APPEND_JOURNAL = (
    "WITH u AS (SELECT e->>0 AS job_id, e->>1 AS record, (e->>2)::int AS token, (e->>3)::int AS batch, ord"
    " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(e, ord)),"
    " held AS (SELECT j.id, j.runs FROM wf_jobs j WHERE j.id IN (SELECT job_id FROM u)"
    " AND j.status = 'running' ORDER BY j.id FOR SHARE),"
    " ins AS (INSERT INTO wf_journal (job_id, record, run, batch) SELECT u.job_id, u.record, u.token, u.batch"
    " FROM u JOIN held ON held.id = u.job_id AND held.runs = u.token ORDER BY u.ord RETURNING job_id)"
    " SELECT DISTINCT job_id FROM ins"
)
# the same, resent: not a batch the job's last row says is held already; returns the ids
# held (written or skipped)
_APPEND_JOURNAL_ONCE = (
    "WITH u AS (SELECT e->>0 AS job_id, e->>1 AS record, (e->>2)::int AS token, (e->>3)::int AS batch, ord"
    " FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(e, ord)),"
    " held AS (SELECT j.id, j.runs FROM wf_jobs j WHERE j.id IN (SELECT job_id FROM u)"
    " AND j.status = 'running' ORDER BY j.id FOR SHARE),"
    " ok AS (SELECT u.* FROM u JOIN held ON held.id = u.job_id AND held.runs = u.token),"
    " ins AS (INSERT INTO wf_journal (job_id, record, run, batch)"
    " SELECT ok.job_id, ok.record, ok.token, ok.batch FROM ok WHERE ok.batch IS NULL"
    " OR NOT EXISTS (SELECT 1 FROM (SELECT l.run, l.batch FROM wf_journal l"
    " WHERE l.job_id = ok.job_id ORDER BY l.pos DESC LIMIT 1) AS last"
    " WHERE last.run = ok.token AND last.batch >= ok.batch) ORDER BY ok.ord)"
    " SELECT DISTINCT job_id FROM ok"
)
# one job's batch in one statement, its text as it is (no JSON escaping, no transaction of
# its own: the job's row is locked while the row goes in): under the job's token, returning
# its id if it runs under it; or, unfenced, returning its id if the job exists
_APPEND_ONE_JOB = (
    "WITH held AS (SELECT id FROM wf_jobs WHERE id = %(job)s AND status = 'running' AND runs = %(token)s"
    " FOR SHARE) INSERT INTO wf_journal (job_id, record, run, batch)"
    " SELECT id, %(record)s, %(token)s, %(batch)s FROM held RETURNING job_id"
)
_APPEND_ONE_JOB_UNFENCED = (
    "WITH held AS (SELECT id FROM wf_jobs WHERE id = %(job)s FOR KEY SHARE)"
    " INSERT INTO wf_journal (job_id, record) SELECT id, %(record)s FROM held RETURNING job_id"
)
# the last journal row's run and batch of each job (the batches it holds already)
_LAST_BATCHES = (
    "SELECT DISTINCT ON (job_id) job_id, run, batch FROM wf_journal WHERE job_id = ANY(%s)"
    " ORDER BY job_id, pos DESC"
)
#: above this many step rows, ``steps`` makes their records in a thread
MANY_STEPS = 1000


def _steps_from(rows: Sequence[Any]) -> list[StepRecord]:
    return [step_from_row(r) for r in rows]


# above this (records' total characters) a worker's flush is plain inserts (see there)
ONE_STATEMENT_JOURNAL_CHARS = 64 * 1024


class PostgresAdmin(PostgresBase):
    """Reading, sweeping and the journal's records (see ``postgres.PostgresStore``)."""

    # -- reading ------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch(f"SELECT {JOB_SELECT} FROM wf_jobs WHERE id = %s", (job_id,))
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
        rows = await self._fetch(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE (%s::text IS NULL OR queue = %s)"
            " AND (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR flow = %s)"
            " ORDER BY seq DESC LIMIT %s OFFSET %s",
            (queue, queue, status, status, flow, flow, limit, offset),
        )
        return [job_from_row(r) for r in rows]

    async def record_steps(self, steps: Sequence[StepRecord]) -> list[str]:
        """One statement, one round trip: the rows of jobs running under the rows' ``run``
        are written (their job rows locked ``FOR SHARE`` while it runs, so a takeover
        waits for it or it sees the takeover); the others' jobs are refused."""
        if not steps:
            return []
        rows = [[getattr(s, c) for c in STEP_COLUMNS] for s in steps]
        written = await self._one(_RECORD_STEPS, (json_rows(rows),))
        kept = {(job_id, run) for job_id, run in written}
        return list({s.job_id: None for s in steps if (s.job_id, s.run) not in kept})

    async def steps(self, job_id: str) -> list[StepRecord]:
        rows = await self._fetch(
            f"SELECT {STEP_SELECT} FROM wf_steps WHERE job_id = %s"
            " ORDER BY run, started_at NULLS FIRST, routine, seq",
            (job_id,),
        )
        if len(rows) > MANY_STEPS:  # (a long job's: seconds of work the loop must not wait for)
            return await asyncio.to_thread(_steps_from, rows)
        return _steps_from(rows)

    async def add_event(self, job_id: str | None, queue: str, kind: str, data: dict[str, Any]) -> None:
        async with self._tx() as conn:
            if job_id is not None:  # (no foreign key: the job's row is held while its event goes in)
                cur = await conn.execute("SELECT 1 FROM wf_jobs WHERE id = %s FOR KEY SHARE", (job_id,))
                if await cur.fetchone() is None:
                    raise StoreRefusedError(f"no job {job_id!r} to add an event to")
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

    # -- paused queues -------------------------------------------------------------------

    async def pause_queue(self, queue: str) -> bool:
        async with self._tx() as conn:
            cur = await conn.execute(
                "INSERT INTO wf_paused_queues (queue, paused_at) VALUES (%s, %s)"
                " ON CONFLICT (queue) DO NOTHING RETURNING queue",
                (queue, self.clock()),
            )
            if await cur.fetchone() is None:
                return False
            kind, data = rules.queue_change(True)
            await self._event(conn, None, queue, kind, self.clock(), data)
        return True

    async def resume_queue(self, queue: str) -> bool:
        async with self._tx() as conn:
            cur = await conn.execute(
                "DELETE FROM wf_paused_queues WHERE queue = %s RETURNING queue", (queue,)
            )
            if await cur.fetchone() is None:
                return False
            kind, data = rules.queue_change(False)
            await self._event(conn, None, queue, kind, self.clock(), data)
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, queue))
        self._wakeups.notify(queue)
        return True

    async def assigned_nodes(self) -> list[str]:
        # (the partial index wf_jobs_node on (node, status) answers it)
        rows = await self._fetch(
            "SELECT DISTINCT node FROM wf_jobs WHERE node IS NOT NULL AND status IN ('queued', 'running')"
            " ORDER BY node"
        )
        return [r[0] for r in rows]

    async def paused_queues(self) -> list[str]:
        rows = await self._fetch("SELECT queue FROM wf_paused_queues ORDER BY queue")
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
        now = self.clock()
        report = SweepReport()
        async with self._tx() as conn:
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (SWEEPER_LOCK,))
            got = await cur.fetchone()
            if not (got and got[0]):
                return None
            report = await self._stall_expired(conn, now, max_stalls)
            if retention is not None:
                report.deleted = await self._retain(conn, retention, now)
        return report

    async def clean(self, retention: Retention) -> int:
        async with self._tx() as conn:
            return await self._retain(conn, retention, self.clock())

    async def _stall_expired(
        self, conn: Conn, now: float, max_stalls: int, queue: str | None = None
    ) -> SweepReport:
        """Take back the running jobs (of ``queue``) whose lease expired before ``now``;
        rows locked by a write under way (``SKIP LOCKED``) wait for the next look."""
        report = SweepReport()
        for job in await self._locked(
            conn,
            "status = 'running' AND lease_expires_at < %s AND (%s::text IS NULL OR queue = %s)",
            (now, queue, queue),
            skip_locked=True,
        ):
            worker = job.worker_id
            change = rules.after_stall(job, now, max_stalls, "lease expired")
            await self._change(conn, job, *change, worker, takeover=True)
            (report.failed if job.status == FAILED else report.requeued).append(job.id)
        return report

    @staticmethod
    async def _retain(conn: Conn, retention: Retention, now: float) -> int:
        completed_before, keep, failed_before = rules.retention_cutoffs(retention, now)
        deleted = 0
        if completed_before is not None:
            cur = await conn.execute(
                "DELETE FROM wf_jobs WHERE status = 'completed' AND finished_at < %s", (completed_before,)
            )
            deleted += cur.rowcount
        if keep is not None:
            cur = await conn.execute(
                "DELETE FROM wf_jobs WHERE id IN (SELECT id FROM wf_jobs WHERE status = 'completed'"
                " ORDER BY finished_at DESC OFFSET %s)",
                (keep,),
            )
            deleted += cur.rowcount
        if failed_before is not None:
            cur = await conn.execute(
                "DELETE FROM wf_jobs WHERE status IN ('failed', 'cancelled') AND finished_at < %s",
                (failed_before,),
            )
            deleted += cur.rowcount
        return deleted

    async def running_since(self, before: float) -> list[JobRecord]:
        rows = await self._fetch(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE status = %s AND started_at < %s", (RUNNING, before)
        )
        return [job_from_row(r) for r in rows]

    async def queue_counts(self) -> list[QueueCounts]:
        now = self.clock()
        return queue_counts(await self._fetch(QUEUE_COUNTS_SQL.format(p="%s"), (now, now)))

    async def finished_counts(self, queue: str, since: float) -> tuple[int, int]:
        rows = await self._fetch(
            "SELECT count(*) FILTER (WHERE kind != 'completed'), count(*) FROM wf_events"
            " WHERE queue = %s AND at >= %s AND kind IN ('completed', 'failed', 'retrying')",
            (queue, since),
        )
        return int(rows[0][0]), int(rows[0][1])

    # -- the durable journal ----------------------------------------------------------------

    async def append_journal(
        self,
        rows: Sequence[tuple[str, str]],
        *,
        tokens: Leases | None = None,
        batches: Mapping[str, int] | None = None,
        resent: bool = False,
    ) -> list[str]:
        if not rows:
            return []
        numbers: Mapping[str, int] = batches if batches and tokens is not None else {}
        token_of: Mapping[str, int] = tokens if tokens is not None else {}
        if tokens is not None and sum(len(r) for _, r in rows) <= ONE_STATEMENT_JOURNAL_CHARS:
            # a worker's flush of small jobs: one statement, one round trip — the fencing
            # check (job rows locked ``FOR SHARE``, in id order as ``_running`` does), the
            # batches held already skipped, and the inserts in the order given (the rows
            # as one JSON text: ``json_rows``)
            written = await self._one(
                _APPEND_JOURNAL_ONCE if resent and numbers else _APPEND_JOURNAL,
                (json_rows([(j, r, tokens.get(j), numbers.get(j)) for j, r in rows]),),
            )
            kept = {r[0] for r in written}
            return sorted({job_id for job_id, _ in rows if job_id not in kept})
        if len(rows) == 1 and not (resent and numbers):
            # one job's batch (a long chain's, bigger than the above): one statement, one
            # round trip, the text as it is (the fencing check and the insert as above)
            job_id, record = rows[0]
            if tokens is None:
                if not await self._one(_APPEND_ONE_JOB_UNFENCED, {"job": job_id, "record": record}):
                    raise StoreRefusedError(f"no job {job_id!r} to append journal records to")
                return []
            token, number = token_of.get(job_id), numbers.get(job_id)
            args = {"job": job_id, "record": record, "token": token, "batch": number}
            return [] if await self._one(_APPEND_ONE_JOB, args) else [job_id]
        refused: set[str] = set()
        # big records (several jobs' batches) as plain inserts in order, pipelined by
        # executemany: the text is sent as it is (in JSON each of its quotes is escaped and
        # the server unescapes it again)
        async with self._tx() as conn:
            batch = list(rows)
            if tokens is not None:
                runs = await self._running(conn, sorted({job_id for job_id, _ in batch}))
                refused = {
                    job_id for job_id, _ in batch if job_id not in runs or runs[job_id] != tokens.get(job_id)
                }
                batch = [row for row in batch if row[0] not in refused]
            else:  # (no foreign key since 0014: the jobs' rows are held while their records go in)
                ids = sorted({job_id for job_id, _ in batch})
                cur = await conn.execute(
                    "SELECT id FROM wf_jobs WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE", (ids,)
                )
                missing = set(ids) - {r[0] for r in await cur.fetchall()}
                if missing:
                    raise StoreRefusedError(f"no job {min(missing)!r} to append journal records to")
            if resent and numbers and batch:
                cur = await conn.execute(_LAST_BATCHES, (sorted({job_id for job_id, _ in batch}),))
                held = {
                    job_id
                    for job_id, run, n in await cur.fetchall()
                    if n is not None
                    and job_id in numbers
                    and run == token_of.get(job_id)
                    and n >= numbers[job_id]
                }
                batch = [row for row in batch if row[0] not in held]
            if batch:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO wf_journal (job_id, record, run, batch) VALUES (%s, %s, %s, %s)",
                        [(j, r, token_of.get(j), numbers.get(j)) for j, r in batch],
                    )
        return sorted(refused)

    async def read_journal(self, job_id: str) -> list[str]:
        rows = await self._fetch("SELECT record FROM wf_journal WHERE job_id = %s ORDER BY pos", (job_id,))
        return [r[0] for r in rows]

    async def clear_journal(self, job_id: str, *, token: int | None = None) -> None:
        async with self._tx() as conn:
            if token is not None and (await self._running(conn, [job_id])).get(job_id) != token:
                raise LeaseLostError([job_id], f"not running under token {token}")
            await conn.execute("DELETE FROM wf_journal WHERE job_id = %s", (job_id,))
            # the from-start retry is consumed with its journal: a later takeover resumes the new run's
            await conn.execute(
                "UPDATE wf_jobs SET from_start = false WHERE id = %s AND from_start", (job_id,)
            )

    # -- waking idle workers ---------------------------------------------------------------

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        self._start_listening()
        await self._wakeups.wait(queue, timeout_s)

    async def wait_finished(self, job_id: str, timeout_s: float | None) -> JobRecord | None:
        """``LISTEN`` first (so no outcome committed after the first read is missed), then
        read the job again at each ``NOTIFY`` of its outcome."""
        if self._outcome_listener is None or self._outcome_listener.done():
            self._outcome_listener = asyncio.get_running_loop().create_task(
                self._listen((OUTCOME_CHANNEL,), self._outcome_listening), name="weirflow:listen-outcomes"
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._outcome_listening.wait()
        if not self._outcome_listening.is_set():  # the server is unreachable: the job as it is, if readable
            return await self.get(job_id)
        return await self._outcomes.wait_finished(self.get, job_id, timeout_s)

    def _start_listening(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(
                self._listen((CHANNEL, SCHEDULE_CHANNEL), self._listening), name="weirflow:listen"
            )

    async def listening(self) -> None:
        """Start listening for submits (as ``wait_for_jobs`` does) and return once ``LISTEN``
        is in place: from then on a submit by any process wakes this store's waiters."""
        self._start_listening()
        await self._listening.wait()

    async def _listen(self, channels: tuple[str, ...], listening: asyncio.Event) -> None:
        """``LISTEN`` on ``channels`` on a connection of its own; reconnects with backoff
        when it drops. Outcomes have a connection of their own, opened by the first
        ``wait_finished``: a worker, which never waits on an outcome, is not sent one
        notification per job finished by every worker (with 4 workers, 4 per job)."""
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    for channel in channels:
                        await conn.execute(f"LISTEN {channel}")
                    listening.set()
                    delay = 0.1
                    async for note in conn.notifies():
                        if note.channel == OUTCOME_CHANNEL:
                            self._outcomes.notify(note.payload)
                        elif note.channel == SCHEDULE_CHANNEL:
                            self._schedule_wakeups.notify(note.payload)
                        else:
                            self._wakeups.notify(note.payload)
            except psycopg.Error as e:
                log.warning("listen_failed", store=self._where(), error=str(e), retry_in_s=delay)
            listening.clear()
            # a lost connection may have lost notifications: wake every waiter to look
            if OUTCOME_CHANNEL in channels:
                self._outcomes.notify_all()
            else:
                self._wakeups.notify_all()
                self._schedule_wakeups.notify_all()
            await asyncio.sleep(delay)
            delay = min(LISTEN_RETRY_MAX_S, delay * 2)
