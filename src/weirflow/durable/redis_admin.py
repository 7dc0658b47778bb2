"""The Redis store's changes computed by rules, reads, sweeper, retention and journal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import msgpack

from ..errors import LeaseLostError, StoreError, StoreRefusedError
from . import rules
from .models import (
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    STATUSES,
    EventRecord,
    JobRecord,
    QueueCounts,
    Retention,
    StepRecord,
    SweepReport,
)
from .models import (
    queue_counts as counts_from_rows,
)
from .redis_base import RECHECK_S, RedisBase
from .redis_codec import (
    event_from,
    job_from_hash,
    mutable_fields,
    num,
    runkey,
    step_field,
    step_from,
    step_row,
    step_text,
)
from .steps import journal_finished
from .store import DEFAULT_MAX_STALLS, SWEEPER_LOCK_TTL_S, Leases

Change = tuple[str, dict[str, Any]]
#: how many times a change is computed again when another one came first
PUT_TRIES = 50
#: jobs read per round trip when listing
PAGE = 500


class RedisAdmin(RedisBase):
    """Changes by rules, reading, sweeping and the journal (see ``redis_store.RedisStore``)."""

    async def _change(
        self,
        job_id: str,
        rule: Callable[[JobRecord], Change | None],
        *,
        missing: Exception | None = None,
        takeover: bool = False,
    ) -> JobRecord | None:
        """Read the job, apply ``rule`` (``None``: nothing to do) and write the change if the
        job did not change meanwhile, else do it again on the new state. Returns the job
        as changed, or ``None`` when the rule declined (or the job is gone and ``missing``
        is not given: then it is raised).

        ``takeover`` (a job taken from its worker: recovered, swept, cancelled, retried): a running job that
        leaves ``running`` gets, in the same script, the rows of the steps its journal
        finished (``steps.journal_finished``: the worker writes its rows in batches
        after the journal, so a dead worker's last rows may be lost), written only if the
        journal did not grow meanwhile; its other running steps become interrupted."""
        for _ in range(PUT_TRIES):
            raw = await self._call(lambda r: r.hgetall(self.key("j", job_id)), retry=True)
            if not raw:
                if missing is not None:
                    raise missing
                return None
            ver = _s(raw[b"ver"])
            job = job_from_hash(raw)
            worker = job.worker_id
            was, token = job.status, job.runs
            change = rule(job)
            if change is None:
                return None
            journal_len, rows = "", b""
            if takeover and was == RUNNING and job.status != RUNNING:
                journal_len, rows = await self._journal_rows(job_id, token, worker)
            kind, data = change
            now = self.clock()
            present, absent = mutable_fields(job)
            args: list[Any] = [
                job_id,
                ver,
                num(now),
                kind,
                _json(data),
                rules.interrupted_why(kind, data, worker),
                runkey(job.run_at),
                str(len(present)),
                str(len(absent)),
            ]
            for name, text in present.items():
                args += [name, text]
            args += absent
            args += [journal_len, rows]
            if await self._run("PUT", args):
                if job.status == QUEUED:
                    self._wakeups.notify(job.queue)
                if job.status in FINISHED:
                    self._outcomes.notify(job.id)
                return job
        raise StoreError(f"job {job_id} kept changing: gave up after {PUT_TRIES} tries")

    async def _journal_rows(self, job_id: str, token: int, worker: str | None) -> tuple[str, bytes]:
        """The length of ``job_id``'s journal and, packed for ``PUT``, the [field, text] of
        each step row to write so that the rows say what that journal finished."""

        async def read(r: Any) -> list[Any]:
            async with r.pipeline(transaction=True) as p:
                p.lrange(self.key("jr", job_id), 0, -1)
                p.hgetall(self.key("s", job_id))
                p.hgetall(self.key("sx", job_id))
                return list(await p.execute())

        journal, found, overrides = await self._call(read, retry=True)
        rows = [step_from(text, overrides.get(f)) for f, text in found.items()]
        texts = [_s(x) for x in journal]
        fixed = journal_finished(job_id, texts, rows, token=token, worker=worker, now=self.clock())
        return str(len(journal)), msgpack.packb([[step_field(s), step_text(s)] for s in fixed])

    async def _stall_expired(self, now: float, max_stalls: int, queue: str | None = None) -> SweepReport:
        """Take back the running jobs (of ``queue``) whose lease expired before ``now``
        (``rules.lease_expired``), each by ``rules.after_stall``."""
        report = SweepReport()
        queues = [queue] if queue is not None else await self._queues()
        for q in queues:
            ids = await self._do("zrangebyscore", self.key("q", q, "running"), "-inf", f"({num(now)}")
            for raw_id in ids:
                job_id = _s(raw_id)

                def rule(job: JobRecord) -> Change | None:
                    if not rules.lease_expired(job, now):
                        return None
                    return rules.after_stall(job, now, max_stalls, "lease expired")

                job = await self._change(job_id, rule, takeover=True)
                if job is not None:
                    (report.failed if job.status == FAILED else report.requeued).append(job_id)
        return report

    # -- reading ------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self._call(lambda r: r.hgetall(self.key("j", job_id)), retry=True)
        return job_from_hash(raw) if raw else None

    async def _jobs(self, ids: Sequence[str]) -> list[JobRecord]:
        if not ids:
            return []

        async def read(r: Any) -> list[Any]:
            async with r.pipeline(transaction=False) as p:
                for job_id in ids:
                    p.hgetall(self.key("j", job_id))
                return list(await p.execute())

        return [job_from_hash(raw) for raw in await self._call(read, retry=True) if raw]

    async def _queues(self) -> list[str]:
        return sorted(_s(q) for q in await self._call(lambda r: r.smembers(self.key("queues")), retry=True))

    async def _running_jobs(self) -> list[JobRecord]:
        ids: list[str] = []
        for q in await self._queues():
            found = await self._do("zrange", self.key("q", q, "running"), 0, -1)
            ids += [_s(x) for x in found]
        return [j for j in await self._jobs(ids) if j.status == RUNNING]

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: str | None = None,
        flow: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Newest first, through the narrowest index the filters allow (``redis_lua.track``):
        the other filters are checked on the jobs read, and with none left a page starts at
        ``offset`` in the index; a job that changed since the index was read is left out. A
        status alone merges the queues' indexes of it (a deep offset there reads as many
        entries of each); running jobs are those of the queues' lease sets, sorted here."""
        await self._indexed()
        exact = flow is None or (queue is None and status is None)
        out: list[JobRecord] = []
        skip = 0 if exact else offset
        size = min(PAGE, limit) if exact else PAGE
        async for ids in self._newest(queue, status, flow, offset if exact else 0, size):
            for job in await self._jobs(ids):
                if (
                    (queue is None or job.queue == queue)
                    and (status is None or job.status == status)
                    and (flow is None or job.flow == flow)
                ):
                    if skip:
                        skip -= 1
                    elif len(out) < limit:
                        out.append(job)
            if len(out) >= limit:
                break
        return out

    async def _newest(
        self, queue: str | None, status: str | None, flow: str | None, start: int, size: int
    ) -> AsyncIterator[list[str]]:
        """Pages of ``size`` ids, newest first from the ``start``-th, of the narrowest index."""
        if status == RUNNING:
            queues = [queue] if queue is not None else await self._queues()
            for i in range(start, len(ids := await self._running_newest(queues)), size):
                yield ids[i : i + size]
            return
        if status is not None and queue is None:
            keys = [self.key("ix", "qs", q, status) for q in await self._queues()]
            async for ids in self._merged_newest(keys, start, size):
                yield ids
            return
        if status is not None:
            index = self.key("ix", "qs", queue or "", status)
        elif queue is not None:
            index = self.key("ix", "q", queue)
        elif flow is not None:
            index = self.key("ix", "f", flow)
        else:
            index = self.key("jobs")
        while found := await self._do("zrevrange", index, start, start + size - 1):
            start += size
            yield [_s(i) for i in found]
            if len(found) < size:
                return

    async def _running_newest(self, queues: Sequence[str]) -> list[str]:
        """The running jobs of ``queues`` (their lease sets: as many as run at once), newest first."""

        async def read(r: Any) -> list[Any]:
            async with r.pipeline(transaction=False) as p:
                for q in queues:
                    p.zrange(self.key("q", q, "running"), 0, -1)
                return list(await p.execute())

        ids = [_s(i) for found in await self._call(read, retry=True) for i in found]

        async def seqs(r: Any) -> list[Any]:
            async with r.pipeline(transaction=False) as p:
                for i in ids:
                    p.hget(self.key("j", i), "seq")
                return list(await p.execute())

        order = [(int(seq), i) for seq, i in zip(await self._call(seqs, retry=True), ids, strict=True) if seq]
        return [i for _, i in sorted(order, reverse=True)]

    async def _merged_newest(self, keys: Sequence[str], start: int, size: int) -> AsyncIterator[list[str]]:
        """The ids of the zsets ``keys`` (by ``seq``, which no two jobs share) merged, newest
        first from the ``start``-th, in pages of ``size``: each page reads the next ``size``
        entries of each zset below the last one taken."""
        below = "+inf"
        while keys:

            async def read(r: Any, below: str = below) -> list[Any]:
                async with r.pipeline(transaction=False) as p:
                    for k in keys:
                        p.zrevrangebyscore(k, below, "-inf", start=0, num=size, withscores=True)
                    return list(await p.execute())

            found = sorted(
                ((s, _s(i)) for part in await self._call(read, retry=True) for i, s in part), reverse=True
            )
            if not found:
                return
            page = found[:size]
            below = f"({num(page[-1][0])}"
            if start >= len(page):
                start -= len(page)
                continue
            yield [i for _, i in page[start:]]
            start = 0

    async def record_steps(self, steps: Sequence[StepRecord]) -> list[str]:
        if not steps:
            return []
        args = [msgpack.packb([step_row(s) for s in steps])]
        refused = [_s(x) for x in await self._run("STEPS", args)]
        return list(dict.fromkeys(refused))

    async def steps(self, job_id: str) -> list[StepRecord]:
        async def read(r: Any) -> list[Any]:
            async with r.pipeline(transaction=True) as p:
                p.hgetall(self.key("s", job_id))
                p.hgetall(self.key("sx", job_id))
                return list(await p.execute())

        rows, overrides = await self._call(read, retry=True)
        found = [step_from(text, overrides.get(f)) for f, text in rows.items()]
        found.sort(key=lambda s: (s.run, s.started_at or 0.0, s.routine, s.seq))
        return found

    async def add_event(self, job_id: str | None, queue: str, kind: str, data: dict[str, Any]) -> None:
        await self._run("ADD_EVENT", [job_id or "", queue, kind, num(self.clock()), _json(data)])

    async def events(
        self, *, job_id: str | None = None, kind: str | None = None, since: float | None = None
    ) -> list[EventRecord]:
        if job_id is not None:
            texts = await self._job_events(job_id)
        else:
            texts = await self._call(lambda r: r.zrange(self.key("ev"), 0, -1), retry=True)
        found = [event_from(t) for t in texts]
        return [e for e in found if (kind is None or e.kind == kind) and (since is None or e.at >= since)]

    async def _job_events(self, job_id: str) -> list[bytes]:
        """The texts of a job's events, in their order: its refs (``id:kind``) are in its
        ``evs`` field (space separated) and its ``P:je:ID`` list (``redis_lua``; a store an
        older version wrote: the list, or the texts there), the texts in ``P:ev`` by id (one
        more round trip; an event deleted in between, with its job, is left out)."""

        async def refs_of(r: Any) -> list[Any]:
            async with r.pipeline(transaction=True) as p:
                p.hget(self.key("j", job_id), "evs")
                p.lrange(self.key("je", job_id), 0, -1)
                return list(await p.execute())

        field, listed = await self._call(refs_of, retry=True)
        texts = [ref for ref in listed if ref.startswith(b"{")]
        refs = [ref for ref in listed if not ref.startswith(b"{")] + (field.split(b" ") if field else [])
        ids = sorted({int(ref.split(b":", 1)[0]) for ref in refs})
        if ids:

            async def read(r: Any) -> list[Any]:
                async with r.pipeline(transaction=False) as p:
                    for i in ids:
                        p.zrangebyscore(self.key("ev"), i, i)
                    return list(await p.execute())

            texts += [t for found in await self._call(read, retry=True) for t in found]
        return texts

    # -- paused queues -------------------------------------------------------------------

    async def pause_queue(self, queue: str) -> bool:
        kind, _ = rules.queue_change(True)
        return bool(await self._run("PAUSE", [queue, num(self.clock()), "1", kind], retry=True))

    async def resume_queue(self, queue: str) -> bool:
        kind, _ = rules.queue_change(False)
        resumed = bool(await self._run("PAUSE", [queue, num(self.clock()), "0", kind], retry=True))
        if resumed:
            self._wakeups.notify(queue)
        return resumed

    async def assigned_nodes(self) -> list[str]:
        # The scripts keep the set of nodes with queued or running jobs (``P:ix:nodes``, beside
        # each node's set of them, ``P:nj:NODE``): one read, as many nodes as there are
        await self._indexed()
        return sorted(_s(n) for n in await self._do("smembers", self.key("ix", "nodes")))

    async def paused_queues(self) -> list[str]:
        return sorted(_s(q) for q in await self._do("hkeys", self.key("paused")))

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
        if not await self._run("SWEEPER", [owner, num(now), num(now + lock_ttl_s)], retry=True):
            return None
        report = await self._stall_expired(now, max_stalls)
        if retention is not None:
            report.deleted = await self._retain(retention, now)
        return report

    async def clean(self, retention: Retention) -> int:
        return await self._retain(retention, self.clock())

    async def _retain(self, retention: Retention, now: float) -> int:
        done = await self._call(lambda r: r.zrange(self.key("done"), 0, -1, withscores=True), retry=True)
        ids = [_s(i) for i, _ in done]
        finished = [
            (j.id, j.status, j.finished_at or 0.0) for j in await self._jobs(ids) if j.status in FINISHED
        ]
        at = {job_id: when for job_id, _, when in finished}
        gone = rules.expired_ids(finished, retention, now)
        deleted = 0
        for i in range(0, len(gone), PAGE):
            args: list[Any] = []
            for job_id in gone[i : i + PAGE]:
                args += [job_id, num(at[job_id])]
            deleted += int(await self._run("DELETE", args, retry=True))
        return deleted

    async def running_since(self, before: float) -> list[JobRecord]:
        return [j for j in await self._running_jobs() if j.started_at is not None and j.started_at < before]

    async def queue_counts(self) -> list[QueueCounts]:
        """From the counts the scripts keep (``redis_lua.COUNTS``): a few reads per queue."""
        await self._indexed()
        rows: list[list[Any]] = []
        for raw in await self._run("COUNTS", [num(self.clock())], retry=True):
            queue, counts, stalls = _s(raw[0]), [int(n) for n in raw[1:6]], int(raw[6])
            delayed, first = int(raw[7]), _s(raw[8])
            for st, n in zip(STATUSES, counts, strict=True):
                if n:  # (a queue's stalls go on its first row: ``counts_from_rows`` adds them up)
                    row = [queue, st, n, 0, None, stalls]
                    stalls = 0
                    if st == QUEUED:
                        row[3], row[4] = delayed, float(first) if first else None
                    rows.append(row)
        return counts_from_rows(rows)

    async def finished_counts(self, queue: str, since: float) -> tuple[int, int]:
        found = await self._call(
            lambda r: r.zrangebyscore(self.key("fin", queue), num(since), "+inf"), retry=True
        )
        kinds = [_s(m).rsplit(":", 1)[1] for m in found]
        return sum(k != "completed" for k in kinds), len(kinds)

    # -- waking --------------------------------------------------------------------------

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        self._start_listening()
        await self._wakeups.wait(queue, timeout_s)

    async def wait_finished(self, job_id: str, timeout_s: float | None) -> JobRecord | None:
        """Subscribed first (so no outcome published after the first read is missed), then
        the job read again at each notification of its outcome."""
        try:
            async with asyncio.timeout(
                min(timeout_s, self.timeout_s) if timeout_s is not None else self.timeout_s
            ):
                await self.listening()
        except TimeoutError:
            return await self._outcomes.wait_finished(self.get, job_id, timeout_s, recheck_s=RECHECK_S)
        return await self._outcomes.wait_finished(self.get, job_id, timeout_s)

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
        numbers = batches if batches and tokens is not None else {}
        packed = [
            [
                job_id,
                "" if tokens is None else str(tokens.get(job_id, -1)),
                record,
                str(numbers[job_id]) if job_id in numbers else "",
            ]
            for job_id, record in rows
        ]
        args = ["0" if tokens is None else "1", msgpack.packb(packed), "1" if resent else "0"]
        refused = await self._run("APPEND", args)
        if refused and isinstance(refused[0], list):  # unfenced, jobs not in the store: none written
            missing = ", ".join(sorted(_s(x) for x in refused[0]))
            raise StoreRefusedError(f"journal records for jobs not in the store: {missing}")
        return sorted(_s(x) for x in refused)

    async def read_journal(self, job_id: str) -> list[str]:
        return [
            _s(x) for x in await self._call(lambda r: r.lrange(self.key("jr", job_id), 0, -1), retry=True)
        ]

    async def clear_journal(self, job_id: str, *, token: int | None = None) -> None:
        if not await self._run("CLEAR_JOURNAL", [job_id, "" if token is None else str(token)], retry=True):
            raise LeaseLostError([job_id], f"not running under token {token}")


def _json(value: Any) -> str:
    return json.dumps(value)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
