# ruff: noqa: S608 - queries are built from constant column lists and %s marks, never from values
"""``PostgresStore``: the store for production and for several machines.

psycopg 3 (async) with a ``psycopg-pool`` pool of autocommit connections, not pinged
at each checkout: a restarted server costs the call that meets a dead connection a
``StoreError``, and that call has the pool test and replace its idle connections, so
the next calls get fresh ones. A one-statement call (a submit, a batch of them, a
completion batch, a lease renewal, a read) is one round trip. Claims take rows with
``FOR UPDATE SKIP LOCKED`` (workers never wait on each other's rows); a queue with a
concurrency or rate limit is claimed under a transaction-level advisory lock on that
queue so the limit holds across workers. Submits (once per queue per batch) and
requeues ``NOTIFY`` a channel that idle workers ``LISTEN`` on. Migrations run under
``pg_advisory_lock``; the sweeper under ``pg_try_advisory_xact_lock`` (one sweep at a
time per database).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..errors import JobError, LeaseLostError, StoreError
from ..flow.policy import Backoff
from ..storable import pg_json
from . import rules
from .models import (
    RUNNING,
    STEP_COLUMNS,
    Claim,
    Done,
    JobRecord,
    JobSpec,
    Rate,
    StepRecord,
    backoff_to_json,
    done_parts,
)
from .postgres_base import (
    _JOB_COLS_J,
    CHANNEL,
    CLAIM_LOCK_PREFIX,
    OUTCOME_CHANNEL,
    STEPS_JSON,
    STEPS_UPSERT,
    json_rows,
    json_text,
)
from .postgres_schedules import PostgresSchedules
from .rows import (
    job_from_row,
)
from .store import DEFAULT_MAX_STALLS, Leases

# pick, take and record the claims of up to %(n)s ready jobs of a queue, in one statement
# (none of a paused queue: ``rules.claimable``); ``{mine}`` picks the unassigned jobs or a
# node's own, and a node's claim makes the unassigned ones its own (``rules.claimed``)
_CLAIM_OF = (
    "WITH picked AS (SELECT id, seq FROM wf_jobs WHERE queue = %(q)s AND status = 'queued'"
    " AND run_at <= %(now)s AND {mine}"
    " AND NOT EXISTS (SELECT 1 FROM wf_paused_queues p WHERE p.queue = %(q)s)"
    " ORDER BY priority DESC, run_at, seq LIMIT %(n)s"
    " FOR UPDATE SKIP LOCKED),"
    " taken AS (UPDATE wf_jobs j SET status = 'running', attempt = j.attempt + 1,"
    " runs = j.runs + 1, worker_id = %(w)s, lease_expires_at = %(lease)s,"
    " node = coalesce(j.node, %(node)s::text),"
    f" started_at = %(now)s FROM picked WHERE j.id = picked.id RETURNING {_JOB_COLS_J}),"
    " ev AS (INSERT INTO wf_events (job_id, queue, kind, at, data)"
    " SELECT id, queue, 'running', %(now)s,"
    " jsonb_build_object('attempt', attempt, 'worker', worker_id) FROM taken)"
    " SELECT * FROM taken"
)
_CLAIM = _CLAIM_OF.format(mine="node IS NULL")
_CLAIM_OWN = _CLAIM_OF.format(mine="node = %(node)s")
NODE_LOCK_PREFIX = "weirflow:node:"

# the jobs of a batch, in order (``ord``: so ``seq`` follows it), their ``queued`` events and a
# NOTIFY per queue; a job whose (queue, key) is held already, by an earlier job or an earlier
# one of this batch, is not inserted (nor its event). The jobs come as one JSON array of rows
# (``_submit_rows``): [id, flow, queue, attempts, priority, run_at, key, timeout, delay, node,
# inputs, backoff] (one text parsed by the server, not twelve arrays adapted by psycopg)
_SUBMIT = (
    "WITH new AS (SELECT e->>0 AS id, e->>1 AS flow, e->>2 AS queue, (e->>3)::integer AS attempts,"
    " (e->>4)::integer AS priority, (e->>5)::float8 AS run_at, e->>6 AS key, (e->>7)::float8 AS timeout,"
    " (e->>8)::float8 AS delay, e->>9 AS node, e->10 AS inputs, e->11 AS backoff, ord"
    " FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS n(e, ord)),"
    " ins AS (INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, priority,"
    " run_at, idempotency_key, timeout_s, created_at, node) SELECT id, flow, inputs, queue, 'queued',"
    " attempts, backoff, priority, run_at, key, timeout, %(now)s, node FROM new ORDER BY ord"
    " ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id, queue),"
    " ev AS (INSERT INTO wf_events (job_id, queue, kind, at, data) SELECT ins.id, ins.queue, 'queued',"
    " %(now)s, jsonb_build_object('delay_s', new.delay) FROM ins JOIN new ON new.id = ins.id),"
    " woken AS (SELECT pg_notify(%(channel)s, q) FROM (SELECT DISTINCT queue AS q FROM ins) d)"
    " SELECT id FROM ins WHERE (SELECT count(*) FROM woken) >= 0"
)


# ``complete``: the jobs held under their tokens become completed with their events and a
# NOTIFY each; the step rows given of those jobs under those runs are written (a running one
# as interrupted: the job ended without it), the jobs' other running rows interrupted
_STEP_FINAL = {
    "status": "CASE WHEN u.status = 'running' THEN 'interrupted' ELSE u.status END",
    "completed_at": "CASE WHEN u.status = 'running' THEN %s ELSE u.completed_at END",
    "error": "CASE WHEN u.status = 'running' THEN %s ELSE u.error END",
}
_COMPLETE = (
    "WITH d AS (SELECT e->>0 AS id, (e->>1)::int AS token, e->2 AS outputs, e->3 AS dl"
    " FROM jsonb_array_elements(%s::jsonb) AS e),"
    # (locked in id order: see ``renew``)
    " lk AS (SELECT j.id FROM wf_jobs j JOIN d ON j.id = d.id WHERE j.runs = d.token"
    " AND j.status = 'running' AND j.worker_id = %s ORDER BY j.id FOR NO KEY UPDATE OF j),"
    " done AS (UPDATE wf_jobs j SET status = 'completed', outputs = d.outputs,"
    " dead_letters = d.dl, finished_at = %s, lease_expires_at = NULL FROM d"
    " JOIN lk ON lk.id = d.id WHERE j.id = d.id"
    " RETURNING j.id, j.queue, j.attempt, j.runs),"
    " ev AS (INSERT INTO wf_events (job_id, queue, kind, at, data)"
    " SELECT id, queue, 'completed', %s, jsonb_build_object('attempt', attempt) FROM done),"
    f" u AS (SELECT u.* FROM {STEPS_JSON} JOIN done ON done.id = u.job_id AND done.runs = u.run),"
    f" sw AS (INSERT INTO wf_steps ({', '.join(STEP_COLUMNS)})"
    f" SELECT {', '.join(_STEP_FINAL.get(c, f'u.{c}') for c in STEP_COLUMNS)} FROM u{STEPS_UPSERT}),"
    " st AS (UPDATE wf_steps s SET status = 'interrupted', completed_at = %s, error = %s"
    " FROM done WHERE s.job_id = done.id AND s.status = 'running' AND NOT EXISTS"
    " (SELECT 1 FROM u WHERE u.job_id = s.job_id AND u.routine = s.routine AND u.seq = s.seq))"
    " SELECT id, pg_notify(%s, id) FROM done"
)

_BACKOFF_TEXTS: dict[Backoff, str] = {}


def _backoff_text(backoff: Backoff) -> str:
    """``backoff_to_json(backoff)``, kept for each backoff met (nearly every job has its
    queue's or the default one; a ``Backoff`` is frozen, so its text cannot change)."""
    text = _BACKOFF_TEXTS.get(backoff)
    if text is None:
        if len(_BACKOFF_TEXTS) >= 1024:  # (a bound, for backoffs made per job)
            _BACKOFF_TEXTS.clear()
        text = _BACKOFF_TEXTS[backoff] = backoff_to_json(backoff)
    return text


def _submit_rows(specs: Sequence[JobSpec], ids: Sequence[str], now: float) -> str:
    """``_SUBMIT``'s rows as one JSON text: each job's scalar columns written as a JSON
    array (``json_text``), then its inputs
    (``pg_json``: floats in exponent form written out in full) and backoff texts spliced
    in as its last two elements (each one complete JSON text)."""
    rows = []
    for s, job_id in zip(specs, ids, strict=True):
        head = json_text(
            [
                job_id,
                s.flow,
                s.queue,
                s.max_attempts,
                s.priority,
                now + s.delay_s,  # (``rules.new_job``'s run_at)
                s.idempotency_key,
                None if s.timeout_s is None else float(s.timeout_s),
                float(s.delay_s),
                s.node,
            ]
        )
        rows.append(f"{head[:-1]},{pg_json(s.inputs)},{_backoff_text(s.backoff)}]")
    return f"[{','.join(rows)}]"


def _done_rows(done: Sequence[Done]) -> str:
    """``complete``'s rows as one JSON text: [id, token, outputs, dead letters] each, the
    outputs and dead letters (``pg_json``) spliced in as JSON values, so the server parses
    them once, with the batch (as JSON strings in the batch they were escaped here, then
    read back as text and parsed again); a completion without dead letters has none
    (element 3 left out: ``e->3`` is SQL ``NULL``)."""
    rows = []
    for d in done:
        job_id, token, outputs, letters = done_parts(d)
        head = json_text([job_id, token])[:-1]
        if letters is None:
            rows.append(f"{head},{pg_json(outputs)}]")
        else:
            rows.append(f"{head},{pg_json(outputs)},{pg_json(letters)}]")
    return f"[{','.join(rows)}]"


class PostgresStore(PostgresSchedules):
    """A ``Store`` in the PostgreSQL database at ``url`` (``postgresql://user@host:port/db``).

    ``pool_size`` bounds the connections of this process; ``connect_timeout_s`` is how
    long a call waits for a connection before raising ``StoreError``.
    """

    # -- submitting and claiming --------------------------------------------------------

    async def submit(self, spec: JobSpec) -> str:
        return (await self.submit_once(spec))[0]

    async def submit_once(self, spec: JobSpec) -> tuple[str, bool]:
        if spec.node is not None:  # (not in a group: its refusal would refuse the others too)
            return (await self.submit_many([spec]))[0]
        # group commit: submits made while a batch is being written wait for it, then go
        # together in the next one (one statement and one NOTIFY for all of them)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[str, bool]] = loop.create_future()
        self._waiting_submits.append((spec, answer))
        if self._submitter is None or self._submitter.done():
            self._submitter = loop.create_task(self._submit_waiting(), name="weirflow:submit")
        return await answer

    async def _submit_waiting(self) -> None:
        while self._waiting_submits:
            batch, self._waiting_submits = self._waiting_submits, []
            try:
                done = await self.submit_many([spec for spec, _ in batch])
            except Exception as e:  # noqa: BLE001 - handed to every submit of the batch, each raises it
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(e)
                continue
            except BaseException:
                for _, answer in batch:
                    answer.cancel()
                raise
            for (_, answer), result in zip(batch, done, strict=True):
                if not answer.done():
                    answer.set_result(result)

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[tuple[str, bool]]:
        if not specs:
            return []
        now = self.clock()
        ids = [uuid.uuid4().hex for _ in specs]
        params = {"rows": _submit_rows(specs, ids, now), "now": now, "channel": CHANNEL}
        if any(s.node is not None for s in specs):
            rows = await self._submit_placed(specs, ids, params)
        else:
            # one statement, so one round trip and one transaction: the jobs, their events and
            # one NOTIFY per queue (delivered at commit)
            rows = await self._one(_SUBMIT, params)
        made = {r[0] for r in rows}
        out = [(job_id, True) for job_id in ids]
        taken = [(i, s) for i, s in enumerate(specs) if ids[i] not in made]
        if taken:  # their keys were held already (maybe by a submit that committed meanwhile)
            held = await self._fetch(
                "SELECT queue, idempotency_key, id FROM wf_jobs WHERE (queue, idempotency_key) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[]))",
                ([s.queue for _, s in taken], [s.idempotency_key for _, s in taken]),
            )
            by_key = {(q, k): job_id for q, k, job_id in held}
            for i, s in taken:
                job_id = by_key.get((s.queue, s.idempotency_key))
                if job_id is None:
                    raise StoreError(f"idempotency key {s.idempotency_key!r} conflicts but no job holds it")
                out[i] = (str(job_id), False)
        for queue in {s.queue for s in specs}:
            self._wakeups.notify(queue)
        return out

    async def _submit_placed(
        self, specs: Sequence[JobSpec], ids: list[str], params: dict[str, Any]
    ) -> list[Any]:
        """``_SUBMIT`` of a batch with jobs assigned to nodes, in a transaction under each
        node's advisory lock (taken in id order, so two batches never deadlock): the jobs
        are inserted, then each node's queued and running jobs counted with them; past its
        capacity, ``NodeFullError`` rolls the batch back."""
        async with self._tx() as conn:
            nodes = sorted({s.node for s in specs if s.node is not None})
            for node in nodes:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (NODE_LOCK_PREFIX + node,))
            cur = await conn.execute(_SUBMIT, params)
            rows = await cur.fetchall()
            made = {r[0] for r in rows}
            demand = rules.node_demand(specs, [job_id not in made for job_id in ids])
            cur = await conn.execute(
                "SELECT node, count(*) FROM wf_jobs WHERE node = ANY(%s) AND status IN ('queued', 'running')"
                " GROUP BY node",
                (list(demand),),
            )
            counted = dict(await cur.fetchall())
            for node, (jobs, cap) in demand.items():
                refusal = rules.node_refusal(node, counted.get(node, 0) - jobs, jobs, cap)
                if refusal is not None:
                    raise refusal
            return rows

    async def claim(
        self,
        queue: str,
        worker_id: str,
        *,
        limit: int,
        lease_s: float,
        queue_concurrency: int | None = None,
        rate: Rate | None = None,
        max_stalls: int = DEFAULT_MAX_STALLS,
        node: str | None = None,
    ) -> Claim:
        now = self.clock()
        if queue_concurrency is None and rate is None and node is None:  # one statement: one round trip
            if self._takeover.due(now):  # (and, every TAKEOVER_CHECK_S, one more)
                async with self._tx() as conn:
                    await self._stall_expired(conn, now, max_stalls, queue)
            rows = await self._one(
                _CLAIM,
                {"q": queue, "now": now, "n": limit, "w": worker_id, "lease": now + lease_s, "node": None},
            )
            if rows:
                found = [job_from_row(r) for r in rows]
                found.sort(key=lambda j: (-j.priority, j.run_at, j.created_at))
                return Claim(found)
            return Claim([], await self._next_delay(queue, now))
        running = recent = 0
        oldest = None
        async with self._tx() as conn:
            if self._takeover.due(now):
                await self._stall_expired(conn, now, max_stalls, queue)
            if node is not None:  # (a submit to the node counts its jobs under this lock)
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (NODE_LOCK_PREFIX + node,))
            if queue_concurrency is not None or rate is not None:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (CLAIM_LOCK_PREFIX + queue,))
            if queue_concurrency is not None:
                cur = await conn.execute(
                    "SELECT count(*) FROM wf_jobs WHERE queue = %s AND status = 'running'", (queue,)
                )
                (running,) = await cur.fetchone() or (0,)
            if rate is not None:  # (the claims out of the window: ``rules.in_rate_window``)
                await conn.execute(
                    "DELETE FROM wf_rate_claims WHERE queue = %s AND claimed_at + %s <= %s",
                    (queue, rate.per_s, now),
                )
                cur = await conn.execute(
                    "SELECT count(*), min(claimed_at) FROM wf_rate_claims WHERE queue = %s", (queue,)
                )
                recent, oldest = await cur.fetchone() or (0, None)
            allowed, wait_s = rules.claim_allowance(
                limit,
                now,
                queue_concurrency=queue_concurrency,
                running=running,
                rate=rate,
                recent=recent,
                oldest=oldest,
            )
            jobs: list[JobRecord] = []
            if allowed > 0:
                # one round trip each: pick, take and record the claims, the node's own first
                params = {"q": queue, "now": now, "n": allowed, "w": worker_id, "lease": now + lease_s}
                params["node"] = node
                if node is not None:
                    cur = await conn.execute(_CLAIM_OWN, params)
                    jobs = [job_from_row(r) for r in await cur.fetchall()]
                    params["n"] = allowed - len(jobs)
                if params["n"]:
                    cur = await conn.execute(_CLAIM, params)
                    jobs += [job_from_row(r) for r in await cur.fetchall()]
                jobs.sort(key=lambda j: (-j.priority, j.run_at, j.created_at))
            if jobs and rate is not None:
                await conn.execute(
                    "INSERT INTO wf_rate_claims (queue, claimed_at)"
                    " SELECT %s, %s FROM generate_series(1, %s)",
                    (queue, now, len(jobs)),
                )
        if not jobs and wait_s is None:
            wait_s = await self._next_delay(queue, now)
        return Claim(jobs, wait_s)  # (only an empty claim asks when the next delayed job is due)

    async def reassign(self, node_id: str) -> list[str]:
        # one statement (``rules.reassigned``): concurrent ones each move a job at most once
        rows = await self._one(
            "WITH moved AS (UPDATE wf_jobs SET node = NULL WHERE node = %(n)s AND status = 'queued'"
            " RETURNING id, queue),"
            " ev AS (INSERT INTO wf_events (job_id, queue, kind, at, data)"
            " SELECT id, queue, 'reassigned', %(now)s, jsonb_build_object('node', %(n)s::text) FROM moved),"
            " woken AS (SELECT pg_notify(%(channel)s, q) FROM (SELECT DISTINCT queue AS q FROM moved) d)"
            " SELECT id, queue FROM moved WHERE (SELECT count(*) FROM woken) >= 0",
            {"n": node_id, "now": self.clock(), "channel": CHANNEL},
        )
        for queue in {r[1] for r in rows}:
            self._wakeups.notify(queue)
        return [r[0] for r in rows]

    async def _next_delay(self, queue: str, now: float) -> float | None:
        """How long until the next delayed job of ``queue`` is due (``None``: there is none)."""
        rows = await self._fetch(
            "SELECT min(run_at) FROM wf_jobs WHERE queue = %s AND status = 'queued' AND run_at > %s",
            (queue, now),
        )
        nxt = None if not rows or rows[0][0] is None else float(rows[0][0])
        return rules.claim_wait_s(0, 1, None, nxt, now)

    # -- leases and outcomes ----------------------------------------------------------------

    async def renew(self, worker_id: str, leases: Leases, lease_s: float) -> list[str]:
        if not leases:
            return []
        # the rows locked in id order, as every statement that locks several job rows does:
        # in another order it deadlocks with this worker's own journal and step-row writes
        rows = await self._fetch(
            "WITH l AS (SELECT j.id FROM wf_jobs j JOIN unnest(%s::text[], %s::int[]) AS u(id, token)"
            " ON j.id = u.id WHERE j.runs = u.token AND j.status = 'running' AND j.worker_id = %s"
            " ORDER BY j.id FOR NO KEY UPDATE OF j)"
            " UPDATE wf_jobs j SET lease_expires_at = %s FROM l WHERE j.id = l.id RETURNING j.id",
            (list(leases), list(leases.values()), worker_id, self.clock() + lease_s),
        )
        return [r[0] for r in rows]

    async def complete(
        self, worker_id: str, done: Sequence[Done], steps: Sequence[StepRecord] = ()
    ) -> list[str]:
        if not done:
            return []
        now = self.clock()
        why = rules.interrupted_why("completed", {}, worker_id)
        # one statement: one round trip; the step rows given go in with their jobs' outcomes
        # (a running one as interrupted), then the job's other running rows are interrupted
        rows = await self._one(
            _COMPLETE,
            (
                _done_rows(done),
                worker_id,
                now,
                now,
                json_rows([[getattr(s, c) for c in STEP_COLUMNS] for s in steps]),
                now,
                why,
                now,
                why,
                OUTCOME_CHANNEL,
            ),
        )
        completed = {r[0] for r in rows}
        return [d[0] for d in done if d[0] not in completed]

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        token: int,
        error: str,
        *,
        retry: bool = True,
        detail: str | None = None,
        dead_letters: list[dict[str, Any]] | None = None,
    ) -> JobRecord:
        async with self._tx() as conn:
            held = await self._locked(
                conn,
                "id = %s AND status = 'running' AND worker_id = %s AND runs = %s",
                (job_id, worker_id, token),
            )
            if not held:
                raise LeaseLostError([job_id], f"not running under token {token} of {worker_id}")
            job = held[0]
            change = rules.after_failure(
                job, error, self.clock(), retry=retry, detail=detail, dead_letters=dead_letters
            )
            await self._change(conn, job, *change, worker_id)
        return job

    async def release(self, leases: Leases, worker_id: str) -> list[str]:
        if not leases:
            return []
        async with self._tx() as conn:
            held = await self._locked(
                conn, "id = ANY(%s) AND status = 'running' AND worker_id = %s", (list(leases), worker_id)
            )
            released = set()
            for job in held:
                if job.runs == leases[job.id]:
                    await self._change(conn, job, *rules.after_release(job, self.clock()), worker_id)
                    released.add(job.id)
        return [job_id for job_id in leases if job_id not in released]

    async def release_unheld(
        self, worker_id: str, held: Collection[str], *, claimed_since: float
    ) -> list[str]:
        async with self._tx() as conn:
            jobs = await self._locked(
                conn,
                "status = 'running' AND worker_id = %s AND started_at >= %s AND NOT (id = ANY(%s))",
                (worker_id, claimed_since, list(held)),
            )
            for job in jobs:
                await self._change(conn, job, *rules.after_release(job, self.clock()), worker_id)
        return [j.id for j in jobs]

    async def recover(self, worker_id: str, max_stalls: int = DEFAULT_MAX_STALLS) -> list[str]:
        async with self._tx() as conn:
            jobs = await self._locked(conn, "status = 'running' AND worker_id = %s", (worker_id,))
            for job in jobs:
                why = f"worker {worker_id} restarted"
                change = rules.after_stall(job, self.clock(), max_stalls, why)
                await self._change(conn, job, *change, worker_id, takeover=True)
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
            worker, running = job.worker_id, job.status == RUNNING
            await self._change(conn, job, *rule(job), worker, takeover=running)
        return job
