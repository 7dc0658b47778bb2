"""``SqliteStore``: the embedded default — one file, WAL mode, nothing to start.

Every call runs on one dedicated thread that owns the connection, so the event
loop never waits on the database — with one exception, the durable journal's
appends (below). Writes take ``BEGIN IMMEDIATE`` (the write
lock up front, so two processes never deadlock upgrading a read lock) and wait
up to ``busy_timeout_s`` for another process's write. ``synchronous=NORMAL`` in
WAL mode survives a process crash (``kill -9``) but may lose the last commits on
power loss; pass ``synchronous="FULL"`` to trade speed for that.

The durable journal appends a batch every few thousand records while jobs run.
Those appends are made inline, on the event loop's thread, on a connection of their
own that never waits for the write lock: when another connection holds it, the
batch goes to the store thread like any other write. A thread would need the GIL
back several times per batch, and a busy event loop takes the GIL back within
microseconds each time it polls, so the thread starves: a 2,000-record batch took
0.8 s to commit behind a CPU-bound job. An inline append of such a batch takes
about 0.3 ms; batches over 1 MiB go to the store thread anyway. That connection
does not checkpoint the WAL; the store thread does, after every 4 MiB appended,
waiting at most 0.1 s for readers and writers to finish.

Idle workers are woken at once by submits made through the same store object;
other processes' submits are seen at the worker's next bounded wait.
"""

# ruff: noqa: S608 - queries are built from constant column lists and "?" marks, never from values

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..errors import LeaseLostError
from . import rules
from .models import (
    QUEUED,
    RUNNING,
    Claim,
    Done,
    JobRecord,
    JobSpec,
    Rate,
    StepRecord,
    backoff_to_json,
    done_parts,
)
from .rows import (
    JOB_SELECT,
    job_from_row,
)
from .sqlite_base import Conn
from .sqlite_schedules import SqliteSchedules
from .store import DEFAULT_MAX_STALLS, Leases

Change = tuple[str, dict[str, Any]]  # an event kind and its data (``rules``)


class SqliteStore(SqliteSchedules):
    """A ``Store`` in the SQLite file ``path`` (created with its folder if missing)."""

    # -- submitting and claiming --------------------------------------------------------

    async def submit(self, spec: JobSpec) -> str:
        return (await self.submit_once(spec))[0]

    async def submit_once(self, spec: JobSpec) -> tuple[str, bool]:
        job_id, created = await self._tx(self._submit_one, spec)
        if created:
            self._wakeups.notify(spec.queue)
        return job_id, created

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[tuple[str, bool]]:
        if not specs:
            return []
        out = await self._tx(self._submit_all, specs)
        for queue in {s.queue for (_, created), s in zip(out, specs, strict=True) if created}:
            self._wakeups.notify(queue)
        return out

    def _submit_all(self, conn: Conn, specs: Sequence[JobSpec]) -> list[tuple[str, bool]]:
        out = [self._submit(conn, spec) for spec in specs]
        skip = [not created for _, created in out]
        for node, (jobs, cap) in rules.node_demand(specs, skip).items():
            # counted with this transaction's jobs: a refusal rolls them all back
            (assigned,) = conn.execute(
                "SELECT count(*) FROM wf_jobs WHERE node = ? AND status IN ('queued', 'running')", (node,)
            ).fetchone()
            refusal = rules.node_refusal(node, assigned - jobs, jobs, cap)
            if refusal is not None:
                raise refusal
        return out

    def _submit_one(self, conn: Conn, spec: JobSpec) -> tuple[str, bool]:
        return self._submit_all(conn, [spec])[0]

    def _submit(self, conn: Conn, spec: JobSpec) -> tuple[str, bool]:
        if spec.idempotency_key is not None:
            row = conn.execute(
                "SELECT id FROM wf_jobs WHERE queue = ? AND idempotency_key = ?",
                (spec.queue, spec.idempotency_key),
            ).fetchone()
            if row is not None:
                return str(row[0]), False
        job = rules.new_job(spec, uuid.uuid4().hex, self.clock())
        conn.execute(
            "INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, priority, run_at,"
            " idempotency_key, timeout_s, created_at, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.flow,
                json.dumps(job.inputs),
                job.queue,
                job.status,
                job.max_attempts,
                backoff_to_json(job.backoff),
                job.priority,
                job.run_at,
                job.idempotency_key,
                job.timeout_s,
                job.created_at,
                job.node,
            ),
        )
        kind, data = rules.queued_event(spec)
        self._event(conn, job.id, job.queue, kind, job.created_at, data)
        job_id = job.id
        return job_id, True

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
        claim: Claim = await self._tx(
            self._claim, queue, worker_id, limit, lease_s, queue_concurrency, rate, max_stalls, node
        )
        return claim

    def _claim(
        self,
        conn: Conn,
        queue: str,
        worker_id: str,
        limit: int,
        lease_s: float,
        queue_concurrency: int | None,
        rate: Rate | None,
        max_stalls: int,
        node: str | None,
    ) -> Claim:
        now = self.clock()
        if self._takeover.due(now):
            self._stall_expired(conn, now, max_stalls, queue)
        paused = conn.execute("SELECT 1 FROM wf_paused_queues WHERE queue = ?", (queue,)).fetchone()
        if not rules.claimable(paused is not None):
            return Claim([])
        running = recent = 0
        oldest = None
        if queue_concurrency is not None:
            (running,) = conn.execute(
                "SELECT count(*) FROM wf_jobs WHERE queue = ? AND status = 'running'", (queue,)
            ).fetchone()
        if rate is not None:  # (the claims out of the window: ``rules.in_rate_window``)
            conn.execute(
                "DELETE FROM wf_rate_claims WHERE queue = ? AND claimed_at + ? <= ?", (queue, rate.per_s, now)
            )
            recent, oldest = conn.execute(
                "SELECT count(*), min(claimed_at) FROM wf_rate_claims WHERE queue = ?", (queue,)
            ).fetchone()
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
            ids = self._ready(conn, queue, now, allowed, node)
            if ids:
                marks = ", ".join("?" * len(ids))
                rows = conn.execute(  # ``rules.claimed``
                    "UPDATE wf_jobs SET status = 'running', attempt = attempt + 1, runs = runs + 1,"
                    " worker_id = ?, node = coalesce(node, ?),"
                    f" lease_expires_at = ?, started_at = ? WHERE id IN ({marks}) RETURNING {JOB_SELECT}",
                    (worker_id, node, now + lease_s, now, *ids),
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
        nxt = None
        if len(jobs) < limit and wait_s is None:
            (nxt,) = conn.execute(
                "SELECT min(run_at) FROM wf_jobs WHERE queue = ? AND status = 'queued' AND run_at > ?",
                (queue, now),
            ).fetchone()
        return Claim(jobs, rules.claim_wait_s(len(jobs), limit, wait_s, nxt, now))

    @staticmethod
    def _ready(conn: Conn, queue: str, now: float, n: int, node: str | None) -> list[str]:
        """Up to ``n`` ready jobs in claim order (``rules.ready_order``): ``node``'s own
        first, then unassigned ones."""
        order = " ORDER BY priority DESC, run_at, rowid LIMIT ?"
        ready = "SELECT id FROM wf_jobs WHERE queue = ? AND status = 'queued' AND run_at <= ?"
        ids: list[str] = []
        if node is not None:
            ids = [r[0] for r in conn.execute(ready + " AND node = ?" + order, (queue, now, node, n))]
        if len(ids) < n:
            ids += [
                r[0] for r in conn.execute(ready + " AND node IS NULL" + order, (queue, now, n - len(ids)))
            ]
        return ids

    async def reassign(self, node_id: str) -> list[str]:
        moved: list[tuple[str, str]] = await self._tx(self._reassign, node_id)
        for queue in {q for _, q in moved}:
            self._wakeups.notify(queue)
        return [job_id for job_id, _ in moved]

    def _reassign(self, conn: Conn, node_id: str) -> list[tuple[str, str]]:
        rows = conn.execute(  # ``rules.reassigned``
            "UPDATE wf_jobs SET node = NULL WHERE node = ? AND status = 'queued' RETURNING id, queue",
            (node_id,),
        ).fetchall()
        now = self.clock()
        for job_id, queue in rows:
            self._event(conn, job_id, queue, "reassigned", now, {"node": node_id})
        return [(r[0], r[1]) for r in rows]

    # -- leases and outcomes ----------------------------------------------------------------

    async def renew(self, worker_id: str, leases: Leases, lease_s: float) -> list[str]:
        if not leases:
            return []
        return await self._tx(self._renew, worker_id, dict(leases), lease_s)

    def _renew(self, conn: Conn, worker_id: str, leases: dict[str, int], lease_s: float) -> list[str]:
        pairs = ", ".join("(?, ?)" for _ in leases)
        rows = conn.execute(
            "UPDATE wf_jobs SET lease_expires_at = ? WHERE status = 'running' AND worker_id = ?"
            f" AND (id, runs) IN (VALUES {pairs}) RETURNING id",
            (self.clock() + lease_s, worker_id, *(v for pair in leases.items() for v in pair)),
        ).fetchall()
        return [r[0] for r in rows]

    async def complete(
        self, worker_id: str, done: Sequence[Done], steps: Sequence[StepRecord] = ()
    ) -> list[str]:
        if not done:
            return []
        refused: list[str] = await self._tx(self._complete, worker_id, list(done), list(steps))
        return refused

    def _complete(self, conn: Conn, worker_id: str, done: list[Done], steps: list[StepRecord]) -> list[str]:
        now = self.clock()
        refused = []
        why = rules.interrupted_why("completed", {}, worker_id)
        for d in done:
            job_id, token, outputs, letters = done_parts(d)
            row = conn.execute(  # ``rules.holds``, then ``rules.completed``
                "UPDATE wf_jobs SET status = 'completed', outputs = ?, dead_letters = ?, finished_at = ?"
                ", lease_expires_at = NULL"
                " WHERE id = ? AND status = 'running' AND worker_id = ? AND runs = ?"
                " RETURNING queue, attempt",
                (json.dumps(outputs), _json_or_null(letters), now, job_id, worker_id, token),
            ).fetchone()
            if row is None:
                refused.append(job_id)
                continue
            self._event(conn, job_id, row[0], "completed", now, {"attempt": row[1]})
            self._changed.append(job_id)
            if steps:
                self._write_steps(conn, rules.completion_steps(steps, job_id, token, now, why))
            self._interrupt_steps(conn, job_id, now, why)
        return refused

    def _held(self, conn: Conn, job_id: str, worker_id: str, token: int) -> JobRecord | None:
        row = conn.execute(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE id = ? AND status = 'running' AND worker_id = ?"
            " AND runs = ?",
            (job_id, worker_id, token),
        ).fetchone()
        return job_from_row(row) if row is not None else None

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
        fail = functools.partial(rules.after_failure, retry=retry, detail=detail, dead_letters=dead_letters)
        job: JobRecord = await self._tx(self._fail, job_id, worker_id, token, error, fail)
        if job.status == QUEUED:
            self._wakeups.notify(job.queue)
        return job

    def _fail(
        self,
        conn: Conn,
        job_id: str,
        worker_id: str,
        token: int,
        error: str,
        fail: Callable[..., tuple[str, dict[str, Any]]],
    ) -> JobRecord:
        job = self._held(conn, job_id, worker_id, token)
        if job is None:
            raise LeaseLostError([job_id], f"not running under token {token} of {worker_id}")
        self._change(conn, job, *fail(job, error, self.clock()), worker_id)
        return job

    async def release(self, leases: Leases, worker_id: str) -> list[str]:
        refused: list[str] = await self._tx(self._release, dict(leases), worker_id)
        if len(refused) < len(leases):
            for queue in set(await self._queues_of([j for j in leases if j not in refused])):
                self._wakeups.notify(queue)
        return refused

    def _release(self, conn: Conn, leases: dict[str, int], worker_id: str) -> list[str]:
        refused = []
        for job_id, token in leases.items():
            job = self._held(conn, job_id, worker_id, token)
            if job is None:
                refused.append(job_id)
                continue
            self._change(conn, job, *rules.after_release(job, self.clock()), worker_id)
        return refused

    async def release_unheld(
        self, worker_id: str, held: Collection[str], *, claimed_since: float
    ) -> list[str]:
        found: list[str] = await self._tx(self._release_unheld, worker_id, set(held), claimed_since)
        if found:
            for queue in set(await self._queues_of(found)):
                self._wakeups.notify(queue)
        return found

    def _release_unheld(self, conn: Conn, worker_id: str, held: set[str], claimed_since: float) -> list[str]:
        rows = conn.execute(
            f"SELECT {JOB_SELECT} FROM wf_jobs"
            " WHERE status = 'running' AND worker_id = ? AND started_at >= ?",
            (worker_id, claimed_since),
        ).fetchall()
        found = []
        for job in (job_from_row(r) for r in rows):
            if job.id not in held:
                self._change(conn, job, *rules.after_release(job, self.clock()), worker_id)
                found.append(job.id)
        return found

    async def recover(self, worker_id: str, max_stalls: int = DEFAULT_MAX_STALLS) -> list[str]:
        return await self._tx(self._recover, worker_id, max_stalls)

    def _recover(self, conn: Conn, worker_id: str, max_stalls: int) -> list[str]:
        rows = conn.execute(
            f"SELECT {JOB_SELECT} FROM wf_jobs WHERE status = 'running' AND worker_id = ?",
            (worker_id,),
        ).fetchall()
        now = self.clock()
        why = f"worker {worker_id} restarted"
        for row in rows:
            job = job_from_row(row)
            self._change(conn, job, *rules.after_stall(job, now, max_stalls, why), worker_id, takeover=True)
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
        worker, running = job.worker_id, job.status == RUNNING
        self._change(conn, job, *rule(job), worker, takeover=running)
        return job


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)
