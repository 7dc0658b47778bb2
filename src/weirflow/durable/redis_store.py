"""``RedisStore``: the job store on Redis (``redis://host:port/db``), every change one Lua script.

The hot paths — submit (a batch: one script), claim, renew, complete, the journal's
appends and the step rows — are scripts of their own that check the fencing token
and make the change together. Every other change (a failure, a stall, a release, a
cancel, a retry) is computed in Python by ``durable.rules`` on the job as read, and
written by the ``PUT`` script only if the job is unchanged since (its ``ver``): a
compare-and-set, tried again on the new state when another change came first. So a
stale token is refused atomically in every case.

Redis keeps what it acknowledged only as well as its persistence is set: run it with
``appendonly yes`` and ``appendfsync always`` (nothing acknowledged lost) or
``appendfsync everysec`` (up to about the last 2 s of acknowledged writes lost on a crash
or power loss: while a background fsync runs, Redis postpones the AOF write up to 2 s and
answers meanwhile); see ``docs/workers.md``.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import msgpack

from ..errors import JobError, LeaseLostError, NodeFullError
from . import rules
from .models import (
    RUNNING,
    Claim,
    Done,
    JobRecord,
    JobSpec,
    Rate,
    StepRecord,
    done_parts,
)
from .redis_admin import Change, _json, _s
from .redis_codec import job_fields, job_from_packed, json_text, num, runkey, step_field, step_text
from .redis_schedules import RedisSchedules
from .store import DEFAULT_MAX_STALLS, Leases


class RedisStore(RedisSchedules):
    """A ``Store`` in the Redis database at ``url``. ``timeout_s`` is every call's deadline,
    ``connect_timeout_s`` that of connecting; ``prefix`` starts every key."""

    # -- submitting and claiming --------------------------------------------------------

    async def submit(self, spec: JobSpec) -> str:
        return (await self.submit_once(spec))[0]

    async def submit_once(self, spec: JobSpec) -> tuple[str, bool]:
        return (await self.submit_many([spec]))[0]

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[tuple[str, bool]]:
        if not specs:
            return []
        now = self.clock()
        jobs = [self._submitted(spec, now) for spec in specs]
        args = [num(now), msgpack.packb(jobs)]
        # (the script is safe to repeat: a job id it finds made answers as before)
        flat = await self._run("SUBMIT", args, retry=True)
        if flat and flat[0] == b"full":  # (``rules.node_refusal``, checked in the script)
            raise NodeFullError(_s(flat[1]), int(flat[2]), int(flat[3]))
        out = [(_s(flat[i]), bool(flat[i + 1])) for i in range(0, len(flat), 2)]
        for queue in {s.queue for s in specs}:
            self._wakeups.notify(queue)
        return out

    def _submitted(self, spec: JobSpec, now: float) -> list[Any]:
        """A new job of ``spec`` as the ``SUBMIT`` script takes it (its id first)."""
        job = rules.new_job(spec, uuid.uuid4().hex, now)
        present, _ = job_fields(job)
        _, data = rules.queued_event(spec)
        keyfield = "" if spec.idempotency_key is None else _keyfield(spec.queue, spec.idempotency_key)
        return [
            job.id,
            keyfield,
            job.queue,
            str(job.priority),
            num(job.run_at),
            runkey(job.run_at),
            "1" if job.run_at > now else "0",
            _json(data),
            [text for pair in present.items() for text in pair],
            spec.node or "",
            str(spec.node_capacity or 0),
            job.flow,
        ]

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
            await self._stall_expired(now, max_stalls, queue)
        out = await self._run(
            "CLAIM",
            [
                queue,
                worker_id,
                num(now),
                num(now + lease_s),
                str(limit),
                "" if queue_concurrency is None else str(queue_concurrency),
                "" if rate is None else str(rate.limit),
                "" if rate is None else num(now + rate.per_s),
                node or "",
            ],
        )
        if out[4:] == [b"paused"]:  # (``rules.claimable``, checked in the script)
            return Claim([])
        running, recent, oldest, nxt = int(out[0]), int(out[1]), _f(out[2]), _f(out[3])
        jobs = [job_from_packed(packed) for packed in out[4:]]
        _, wait_s = rules.claim_allowance(
            limit,
            now,
            queue_concurrency=queue_concurrency,
            running=running,
            rate=rate,
            recent=recent,
            oldest=None if oldest is None or rate is None else oldest - rate.per_s,
        )
        return Claim(jobs, rules.claim_wait_s(len(jobs), limit, wait_s, nxt, now))

    async def reassign(self, node_id: str) -> list[str]:
        moved = [_s(x) for x in await self._run("REASSIGN", [node_id, num(self.clock())])]
        if moved:
            for queue in await self._queues():
                self._wakeups.notify(queue)
        return moved

    # -- leases and outcomes ----------------------------------------------------------------

    async def renew(self, worker_id: str, leases: Leases, lease_s: float) -> list[str]:
        if not leases:
            return []
        args: list[Any] = [worker_id, num(self.clock() + lease_s)]
        for job_id, token in leases.items():
            args += [job_id, str(token)]
        return [_s(x) for x in await self._run("RENEW", args, retry=True)]

    async def complete(
        self, worker_id: str, done: Sequence[Done], steps: Sequence[StepRecord] = ()
    ) -> list[str]:
        if not done:
            return []
        # a job's step rows go with its completion, those of its run only (``STEPS``'s rows: a
        # row of another job or run is not written), so the script writes them only for a job
        # it completes
        by_run: dict[tuple[str, int], list[list[str]]] = {}
        for s in steps:
            by_run.setdefault((s.job_id, s.run), []).append([step_field(s), step_text(s), s.status])
        rows = []
        for d in done:
            job_id, token, outputs, letters = done_parts(d)
            kept = "" if letters is None else json_text(letters)
            rows.append([job_id, str(token), json_text(outputs), kept, by_run.get((job_id, token), [])])
        why = rules.interrupted_why("completed", {}, worker_id)
        args = [worker_id, num(self.clock()), why, msgpack.packb(rows)]
        return [_s(x) for x in await self._run("COMPLETE", args)]

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
        def rule(job: JobRecord) -> Change | None:
            if not rules.holds(job, worker_id, token):
                raise LeaseLostError([job_id], f"not running under token {token} of {worker_id}")
            letters = copy.deepcopy(dead_letters)
            return rules.after_failure(
                job, error, self.clock(), retry=retry, detail=detail, dead_letters=letters
            )

        job = await self._change(job_id, rule, missing=LeaseLostError([job_id], "no such job"))
        assert job is not None
        return job

    async def release(self, leases: Leases, worker_id: str) -> list[str]:
        refused = []
        for job_id, token in leases.items():

            def rule(job: JobRecord, token: int = token) -> Change | None:
                if not rules.holds(job, worker_id, token):
                    return None
                return rules.after_release(job, self.clock())

            if await self._change(job_id, rule) is None:
                refused.append(job_id)
        return refused

    async def release_unheld(
        self, worker_id: str, held: Collection[str], *, claimed_since: float
    ) -> list[str]:
        keep = set(held)
        found = []
        for job in await self._running_jobs():
            if job.worker_id != worker_id or job.id in keep:
                continue
            if job.started_at is None or job.started_at < claimed_since:
                continue  # (claimed before: not a lost claim's)

            def rule(j: JobRecord, token: int = job.token) -> Change | None:
                if not rules.holds(j, worker_id, token):
                    return None
                return rules.after_release(j, self.clock())

            if await self._change(job.id, rule) is not None:
                found.append(job.id)
        return found

    async def recover(self, worker_id: str, max_stalls: int = DEFAULT_MAX_STALLS) -> list[str]:
        found = []
        why = f"worker {worker_id} restarted"
        for job in await self._running_jobs():
            if job.worker_id != worker_id:
                continue

            def rule(j: JobRecord) -> Change | None:
                if j.status != RUNNING or j.worker_id != worker_id:
                    return None
                return rules.after_stall(j, self.clock(), max_stalls, why)

            if await self._change(job.id, rule, takeover=True) is not None:
                found.append(job.id)
        return found

    async def cancel(self, job_id: str) -> JobRecord:
        job = await self._change(
            job_id, lambda j: rules.cancel(j, self.clock()), missing=_no_job(job_id), takeover=True
        )
        assert job is not None
        return job

    async def retry(self, job_id: str, *, from_start: bool = False) -> JobRecord:
        job = await self._change(
            job_id,
            lambda j: rules.manual_retry(j, self.clock(), from_start=from_start),
            missing=_no_job(job_id),
            takeover=True,
        )
        assert job is not None
        return job


def _keyfield(queue: str, key: str) -> str:
    return _json([queue, key])


def _f(value: Any) -> float | None:
    text = _s(value)
    return float(text) if text else None


def _no_job(job_id: str) -> JobError:
    return JobError(f"no job {job_id!r} in the store")
