"""``MemoryStore``: the whole store in one process's memory, for tests and trials.

Like dramatiq's ``StubBroker``: the same semantics as the SQL backends (the shared
suite runs against it), nothing survives the process.
"""

from __future__ import annotations

import copy
import itertools
import time
import uuid
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..errors import JobError, LeaseLostError, StoreRefusedError
from . import rules
from .models import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    Claim,
    Done,
    EventRecord,
    JobRecord,
    JobSpec,
    QueueCounts,
    Rate,
    Retention,
    StepRecord,
    SweepReport,
    counts_of,
    done_parts,
)
from .schedules import Fired, Schedule, added
from .steps import taken_over
from .store import DEFAULT_MAX_STALLS, SWEEPER_LOCK_TTL_S, Clock, Leases
from .wakeup import Outcomes, Wakeups


class MemoryStore:
    """A ``Store`` in a dict. Every method copies records in and out, like a database would."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.url = "memory://"
        self.clock = clock
        self._jobs: dict[str, JobRecord] = {}
        self._order: dict[str, int] = {}
        self._seq = itertools.count()
        self._keys: dict[tuple[str, str], str] = {}
        self._steps: dict[tuple[str, str, int], StepRecord] = {}
        self._events: list[EventRecord] = []
        self._event_ids = itertools.count(1)
        self._claims: dict[str, deque[float]] = {}
        self._sweeper: tuple[str, float] | None = None
        self._journal: dict[str, list[str]] = {}
        self._last_batch: dict[str, tuple[int, int]] = {}  # job id -> (token, batch) appended last
        self._wakeups = Wakeups()
        self._outcomes = Outcomes()
        self._schedules: dict[str, Schedule] = {}
        self._schedule_wakeups = Wakeups()
        self._takeover = rules.TakeoverTimer()
        self._paused: dict[str, float] = {}

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> MemoryStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _event(
        self, job: JobRecord | None, queue: str, kind: str, data: dict[str, Any], at: float | None = None
    ) -> None:
        when = self.clock() if at is None else at
        self._events.append(
            EventRecord(next(self._event_ids), job.id if job else None, queue, kind, when, data)
        )
        if job is not None:
            self._outcomes.notify(job.id)

    def _change(
        self, job: JobRecord, kind: str, data: dict[str, Any], worker: str | None, *, takeover: bool = False
    ) -> None:
        """Record a state change made by a rule; a job that left ``running`` (its worker
        was ``worker``) has no running step any more. ``takeover`` (a running job taken
        from its worker): the steps its journal finished are written as such
        (``steps.taken_over``)."""
        self._event(job, job.queue, kind, data)
        if job.status != RUNNING:
            now = self.clock()
            why = rules.interrupted_why(kind, data, worker)
            rows = [s for (job_id, *_), s in self._steps.items() if job_id == job.id]
            if takeover:
                journal = self._journal.get(job.id, [])
                for row in taken_over(job.id, journal, rows, token=job.runs, worker=worker, now=now, why=why):
                    self._steps[(row.job_id, row.routine, row.seq)] = row
            else:
                for step in rows:
                    if step.status == RUNNING:
                        step.status, step.completed_at, step.error = INTERRUPTED, now, why
        if job.status == QUEUED:
            self._wakeups.notify(job.queue)

    def _job(self, job_id: str) -> JobRecord:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobError(f"no job {job_id!r} in the store") from None

    async def submit(self, spec: JobSpec) -> str:
        return (await self.submit_once(spec))[0]

    async def submit_once(self, spec: JobSpec) -> tuple[str, bool]:
        return self._submit_all([spec])[0]

    def _submit_all(self, specs: Sequence[JobSpec]) -> list[tuple[str, bool]]:
        held = [s.idempotency_key is not None and (s.queue, s.idempotency_key) in self._keys for s in specs]
        first = rules.first_of_keys(specs)
        skip = [h or f is not None for h, f in zip(held, first, strict=True)]
        for node, (jobs, cap) in rules.node_demand(specs, skip).items():
            refusal = rules.node_refusal(node, self._assigned(node), jobs, cap)
            if refusal is not None:
                raise refusal
        return [self._submit(spec) for spec in specs]  # (nothing awaits in there)

    def _assigned(self, node: str) -> int:
        return sum(1 for j in self._jobs.values() if j.node == node and j.status in (QUEUED, RUNNING))

    def _submit(self, spec: JobSpec) -> tuple[str, bool]:
        if spec.idempotency_key is not None:
            known = self._keys.get((spec.queue, spec.idempotency_key))
            if known is not None:
                return known, False
        job = rules.new_job(spec, uuid.uuid4().hex, self.clock())
        self._jobs[job.id] = job
        self._order[job.id] = next(self._seq)
        if spec.idempotency_key is not None:
            self._keys[(spec.queue, spec.idempotency_key)] = job.id
        self._event(job, job.queue, *rules.queued_event(spec))
        self._wakeups.notify(spec.queue)
        return job.id, True

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[tuple[str, bool]]:
        return self._submit_all(specs)

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
        if self._takeover.due(now):
            self._stall_expired(now, max_stalls, queue)
        if not rules.claimable(queue in self._paused):
            return Claim([])
        recent = self._claims.setdefault(queue, deque())
        if rate is not None:
            while recent and not rules.in_rate_window(recent[0], rate, now):
                recent.popleft()
        running = sum(1 for j in self._jobs.values() if j.queue == queue and j.status == RUNNING)
        allowed, wait_s = rules.claim_allowance(
            limit,
            now,
            queue_concurrency=queue_concurrency,
            running=running,
            rate=rate,
            recent=len(recent),
            oldest=recent[0] if recent else None,
        )
        ready = sorted(  # a node's own jobs first, then the pool's (``Store.claim``)
            (
                j
                for j in self._jobs.values()
                if j.queue == queue and j.status == QUEUED and (j.node is None or j.node == node)
            ),
            key=lambda j: (j.node is None, *rules.ready_order(j, self._order[j.id])),
        )
        taken: list[JobRecord] = []
        for job in ready:
            if len(taken) >= allowed:
                break
            if job.run_at > now:
                continue
            kind, data = rules.claimed(job, worker_id, now, lease_s, node)
            if rate is not None:
                recent.append(now)
            self._event(job, queue, kind, data, now)
            taken.append(copy.deepcopy(job))
        later = [j.run_at for j in ready if j.run_at > now]
        return Claim(taken, rules.claim_wait_s(len(taken), limit, wait_s, min(later, default=None), now))

    async def reassign(self, node_id: str) -> list[str]:
        moved = []
        for job in self._jobs.values():
            if job.node == node_id and job.status == QUEUED:
                change = rules.reassigned(job)
                if change is not None:
                    self._change(job, *change, None)
                    moved.append(job.id)
        return moved

    async def assigned_nodes(self) -> list[str]:
        return sorted(
            {j.node for j in self._jobs.values() if j.node is not None and j.status in (QUEUED, RUNNING)}
        )

    def _held(self, job_id: str, worker_id: str, token: int) -> JobRecord | None:
        job = self._jobs.get(job_id)
        return job if rules.holds(job, worker_id, token) else None

    def _current(self, job_id: str, token: int) -> bool:
        return rules.runs_under(self._jobs.get(job_id), token)

    async def renew(self, worker_id: str, leases: Leases, lease_s: float) -> list[str]:
        now = self.clock()
        held = []
        for job_id, token in leases.items():
            job = self._held(job_id, worker_id, token)
            if job is not None:
                job.lease_expires_at = now + lease_s
                held.append(job_id)
        return held

    async def complete(
        self, worker_id: str, done: Sequence[Done], steps: Sequence[StepRecord] = ()
    ) -> list[str]:
        now = self.clock()
        why = rules.interrupted_why("completed", {}, worker_id)
        refused = []
        for d in done:
            job_id, token, outputs, letters = done_parts(d)
            job = self._held(job_id, worker_id, token)
            if job is None:
                refused.append(job_id)
                continue
            for row in rules.completion_steps(steps, job_id, token, now, why):
                self._steps[(row.job_id, row.routine, row.seq)] = copy.copy(row)
            change = rules.completed(job, copy.deepcopy(outputs), copy.deepcopy(letters), now)
            self._change(job, *change, worker_id)
        return refused

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
        job = self._held(job_id, worker_id, token)
        if job is None:
            raise LeaseLostError([job_id], f"not running under token {token} of {worker_id}")
        letters = copy.deepcopy(dead_letters)
        kind, data = rules.after_failure(
            job, error, self.clock(), retry=retry, detail=detail, dead_letters=letters
        )
        self._change(job, kind, data, worker_id)
        return copy.deepcopy(job)

    async def release(self, leases: Leases, worker_id: str) -> list[str]:
        refused = []
        for job_id, token in leases.items():
            job = self._held(job_id, worker_id, token)
            if job is None:
                refused.append(job_id)
                continue
            kind, data = rules.after_release(job, self.clock())
            self._change(job, kind, data, worker_id)
        return refused

    async def release_unheld(
        self, worker_id: str, held: Collection[str], *, claimed_since: float
    ) -> list[str]:
        keep = set(held)
        found = []
        for job in list(self._jobs.values()):
            mine = job.status == RUNNING and job.worker_id == worker_id
            if mine and job.id not in keep and _since(job, claimed_since):
                kind, data = rules.after_release(job, self.clock())
                self._change(job, kind, data, worker_id)
                found.append(job.id)
        return found

    async def recover(self, worker_id: str, max_stalls: int = DEFAULT_MAX_STALLS) -> list[str]:
        now = self.clock()
        found = []
        for job in self._jobs.values():
            if job.status == RUNNING and job.worker_id == worker_id:
                kind, data = rules.after_stall(job, now, max_stalls, f"worker {worker_id} restarted")
                self._change(job, kind, data, worker_id, takeover=True)
                found.append(job.id)
        return found

    async def cancel(self, job_id: str) -> JobRecord:
        job = self._job(job_id)
        worker, running = job.worker_id, job.status == RUNNING
        kind, data = rules.cancel(job, self.clock())
        self._change(job, kind, data, worker, takeover=running)
        return copy.deepcopy(job)

    async def retry(self, job_id: str, *, from_start: bool = False) -> JobRecord:
        job = self._job(job_id)
        worker, running = job.worker_id, job.status == RUNNING
        kind, data = rules.manual_retry(job, self.clock(), from_start=from_start)
        self._change(job, kind, data, worker, takeover=running)
        return copy.deepcopy(job)

    async def pause_queue(self, queue: str) -> bool:
        if queue in self._paused:
            return False
        self._paused[queue] = self.clock()
        self._event(None, queue, *rules.queue_change(True))
        return True

    async def resume_queue(self, queue: str) -> bool:
        if self._paused.pop(queue, None) is None:
            return False
        self._event(None, queue, *rules.queue_change(False))
        self._wakeups.notify(queue)
        return True

    async def paused_queues(self) -> list[str]:
        return sorted(self._paused)

    async def get(self, job_id: str) -> JobRecord | None:
        job = self._jobs.get(job_id)
        return copy.deepcopy(job) if job is not None else None

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: str | None = None,
        flow: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        jobs = [
            j
            for j in self._jobs.values()
            if (queue is None or j.queue == queue)
            and (status is None or j.status == status)
            and (flow is None or j.flow == flow)
        ]
        jobs.sort(key=lambda j: self._order[j.id], reverse=True)
        return [copy.deepcopy(j) for j in jobs[offset : offset + limit]]

    async def record_steps(self, steps: Sequence[StepRecord]) -> list[str]:
        refused: dict[str, None] = {}
        for step in steps:
            if self._current(step.job_id, step.run):
                self._steps[(step.job_id, step.routine, step.seq)] = copy.copy(step)
            else:
                refused[step.job_id] = None
        return list(refused)

    async def steps(self, job_id: str) -> list[StepRecord]:
        rows = [copy.copy(s) for (j, *_), s in self._steps.items() if j == job_id]
        rows.sort(key=lambda s: (s.run, s.started_at or 0.0, s.routine, s.seq))
        return rows

    async def add_event(self, job_id: str | None, queue: str, kind: str, data: dict[str, Any]) -> None:
        self._events.append(EventRecord(next(self._event_ids), job_id, queue, kind, self.clock(), data))

    async def events(
        self, *, job_id: str | None = None, kind: str | None = None, since: float | None = None
    ) -> list[EventRecord]:
        return [
            copy.copy(e)
            for e in self._events
            if (job_id is None or e.job_id == job_id)
            and (kind is None or e.kind == kind)
            and (since is None or e.at >= since)
        ]

    async def sweep(
        self,
        owner: str,
        *,
        max_stalls: int = DEFAULT_MAX_STALLS,
        retention: Retention | None = None,
        lock_ttl_s: float = SWEEPER_LOCK_TTL_S,
    ) -> SweepReport | None:
        now = self.clock()
        holder, expires_at = self._sweeper or (None, None)
        if not rules.may_sweep(holder, expires_at, owner, now):
            return None
        self._sweeper = (owner, now + lock_ttl_s)
        report = self._stall_expired(now, max_stalls)
        if retention is not None:
            report.deleted = self._retain(retention, now)
        return report

    async def clean(self, retention: Retention) -> int:
        return self._retain(retention, self.clock())

    def _retain(self, retention: Retention, now: float) -> int:
        deleted = 0
        finished = [
            (j.id, j.status, j.finished_at or 0.0) for j in self._jobs.values() if j.status in FINISHED
        ]
        for job_id in rules.expired_ids(finished, retention, now):
            job = self._jobs.pop(job_id)
            self._order.pop(job_id)
            if job.idempotency_key is not None:
                self._keys.pop((job.queue, job.idempotency_key), None)
            for key in [k for k in self._steps if k[0] == job_id]:
                del self._steps[key]
            self._journal.pop(job_id, None)
            self._last_batch.pop(job_id, None)
            deleted += 1
        if deleted:
            self._events = [e for e in self._events if e.job_id is None or e.job_id in self._jobs]
        return deleted

    def _stall_expired(self, now: float, max_stalls: int, queue: str | None = None) -> SweepReport:
        report = SweepReport()
        for job in self._jobs.values():
            if rules.lease_expired(job, now) and (queue is None or job.queue == queue):
                worker = job.worker_id
                kind, data = rules.after_stall(job, now, max_stalls, "lease expired")
                self._change(job, kind, data, worker, takeover=True)
                (report.failed if job.status == FAILED else report.requeued).append(job.id)
        return report

    async def running_since(self, before: float) -> list[JobRecord]:
        return [
            copy.deepcopy(j)
            for j in self._jobs.values()
            if j.status == RUNNING and j.started_at is not None and j.started_at < before
        ]

    async def queue_counts(self) -> list[QueueCounts]:
        return counts_of(self._jobs.values(), self.clock())

    async def finished_counts(self, queue: str, since: float) -> tuple[int, int]:
        failed = finished = 0
        for e in self._events:
            if e.queue == queue and e.at >= since and e.kind in ("completed", "failed", "retrying"):
                finished += 1
                failed += e.kind != "completed"
        return failed, finished

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        await self._wakeups.wait(queue, timeout_s)

    async def wait_finished(self, job_id: str, timeout_s: float | None) -> JobRecord | None:
        return await self._outcomes.wait_finished(self.get, job_id, timeout_s)

    async def append_journal(
        self,
        rows: Sequence[tuple[str, str]],
        *,
        tokens: Leases | None = None,
        batches: Mapping[str, int] | None = None,
        resent: bool = False,
    ) -> list[str]:
        refused: set[str] = set()
        if tokens is not None:
            refused = {job_id for job_id, _ in rows if not self._current(job_id, tokens.get(job_id, -1))}
        missing = {job_id for job_id, _ in rows if job_id not in self._jobs} - refused
        if missing:
            gone = ", ".join(sorted(missing))
            raise StoreRefusedError(f"journal records for jobs not in the store: {gone}")
        skip = set(refused)
        if tokens is not None and batches:
            for job_id, n in batches.items():
                last = self._last_batch.get(job_id)
                if job_id in skip or job_id not in tokens:
                    continue
                if resent and last is not None and last[0] == tokens[job_id] and last[1] >= n:
                    skip.add(job_id)  # held already (a batch sent again)
                else:
                    self._last_batch[job_id] = (tokens[job_id], n)
        for job_id, record in rows:
            if job_id not in skip:
                self._journal.setdefault(job_id, []).append(record)
        return sorted(refused)

    async def read_journal(self, job_id: str) -> list[str]:
        return list(self._journal.get(job_id, ()))

    async def clear_journal(self, job_id: str, *, token: int | None = None) -> None:
        if token is not None and not self._current(job_id, token):
            raise LeaseLostError([job_id], f"not running under token {token}")
        self._journal.pop(job_id, None)
        job = self._jobs.get(job_id)
        if job is not None:  # the from-start retry is consumed with its journal
            job.from_start = False

    # -- schedules ---------------------------------------------------------------------------

    async def add_schedule(self, schedule: Schedule) -> Schedule:
        new = added(copy.deepcopy(schedule), self._schedules.get(schedule.name), self.clock())
        self._schedules[new.name] = new
        self._schedule_wakeups.notify(new.queue)
        return copy.deepcopy(new)

    async def remove_schedule(self, name: str) -> bool:
        gone = self._schedules.pop(name, None)
        if gone is not None:
            self._schedule_wakeups.notify(gone.queue)
        return gone is not None

    async def list_schedules(self, *, queue: str | None = None) -> list[Schedule]:
        return [
            copy.deepcopy(s) for _, s in sorted(self._schedules.items()) if queue is None or s.queue == queue
        ]

    async def fire_schedules(self, queue: str) -> Fired:
        now = self.clock()
        made: list[str] = []
        for _, s in sorted(self._schedules.items()):
            if s.queue != queue or s.next_at > now:
                continue
            tick, next_at, dropped = s.due(now)
            if dropped:
                self._event(None, queue, "schedule_skipped", {"schedule": s.name, "fired": tick})
            s.next_at = next_at
            if tick is not None:
                job_id, created = await self.submit_once(s.spec(tick))
                s.last_at, s.last_job_id = tick, job_id
                if created:
                    made.append(job_id)
        due = [s.next_at for s in self._schedules.values() if s.queue == queue]
        return Fired(made, min(due) if due else None)

    async def wait_for_schedules(self, queue: str, timeout_s: float) -> None:
        await self._schedule_wakeups.wait(queue, timeout_s)


def _since(job: JobRecord, claimed_since: float) -> bool:
    return job.started_at is not None and job.started_at >= claimed_since
