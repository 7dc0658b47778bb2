"""The Redis store's batch scripts: a claim, a completion batch and a batch of step rows each
change many jobs in one script, with one command per set or index for them all; what a
caller sees is as when they were written one job at a time."""

from __future__ import annotations

import asyncio
import math
import uuid

import redis.asyncio as aioredis

from weirflow.durable import JobSpec, StepRecord
from weirflow.durable.models import Backoff, Retention
from weirflow.durable.redis_store import RedisStore


def _store(url: str) -> RedisStore:
    return RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}")


async def test_a_completion_batch_wakes_every_waiter_of_another_process(redis_url: str) -> None:
    """The outcomes of a batch are published in one message; a store waiting on each of its
    jobs hears of every one (not only of a job alone in its message)."""
    worker, client = _store(redis_url), RedisStore(redis_url, prefix="")
    client.prefix = worker.prefix
    await worker.open()
    await client.open()
    try:
        ids = [i for i, _ in await worker.submit_many([JobSpec("f", {}) for _ in range(3)])]
        await client.listening()
        waits = [asyncio.ensure_future(client.wait_finished(i, None)) for i in ids]  # (no re-reads)
        jobs = (await worker.claim("default", "w", limit=3, lease_s=30)).jobs
        assert await worker.complete("w", [(j.id, j.token, {"n": 1}) for j in jobs]) == []
        done = await asyncio.wait_for(asyncio.gather(*waits), 20.0)
        assert [j.status if j else None for j in done] == ["completed"] * 3
    finally:
        await worker.close()
        await client.close()


async def test_a_claim_and_a_completion_of_many_jobs_leave_each_as_one_at_a_time_would(
    redis_url: str,
) -> None:
    """Attempts, tokens, events (numbered in order), counts and indexes after a batch."""
    store = _store(redis_url)
    await store.open()
    try:
        ids = [i for i, _ in await store.submit_many([JobSpec("f", {}, priority=p) for p in (0, 1, 2)])]
        jobs = (await store.claim("default", "w", limit=5, lease_s=30)).jobs
        assert [j.id for j in jobs] == ids[::-1]  # highest priority first
        assert [(j.status, j.attempt, j.token, j.worker_id) for j in jobs] == [("running", 1, 1, "w")] * 3
        (c,) = await store.queue_counts()
        assert (c.jobs["queued"], c.jobs["running"]) == (0, 3)
        done = [(j.id, j.token, {"n": k}) for k, j in enumerate(jobs)]
        assert await store.complete("w", [*done, (ids[0], 1, {})]) == [ids[0]]  # (already done)
        for k, j in enumerate(jobs):
            got = await store.get(j.id)
            assert got is not None and got.status == "completed" and got.outputs == {"n": k}
            assert got.lease_expires_at is None
        events = await store.events()
        assert [e.id for e in events] == sorted(e.id for e in events)
        assert [(e.job_id, e.kind) for e in events[3:]] == [(j.id, "running") for j in jobs] + [
            (j.id, "completed") for j in jobs
        ]
        (c,) = await store.queue_counts()
        assert (c.jobs["running"], c.jobs["completed"]) == (0, 3)
        assert len(await store.list_jobs(status="completed", limit=10)) == 3
        assert await store.finished_counts("default", 0) == (0, 3)
        # claimed again after a cancel and a retry: a new token (its attempts start again)
        other = await store.submit(JobSpec("f", {}, max_attempts=3))
        (first,) = (await store.claim("default", "w", limit=5, lease_s=30)).jobs
        await store.cancel(other)
        await store.retry(other)
        (again,) = (await store.claim("default", "w2", limit=5, lease_s=30)).jobs
        assert (first.token, first.attempt) == (1, 1)
        assert (again.id, again.attempt, again.token, again.worker_id) == (other, 1, 2, "w2")
    finally:
        await store.close()


async def test_a_batch_of_step_rows_keeps_the_last_row_of_each_step(redis_url: str) -> None:
    """A step's running row then its completed row in one batch: it is completed (and not
    marked interrupted when the job is cancelled); another run's rows are refused; a row
    orjson would write otherwise (a progress that is not a number, a lone surrogate) reads
    back as it was."""
    store = _store(redis_url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec("f", {}))
        (job,) = (await store.claim("default", "w", limit=1, lease_s=30)).jobs
        run = job.token

        def row(routine: str, status: str, *, progress: float = 0.0, worker: str = "w") -> StepRecord:
            done = 2.0 if status == "completed" else None
            return StepRecord(
                job_id, routine, 1, status, run=run, progress=progress, completed_at=done, worker=worker
            )

        odd = row("c", "running", progress=math.nan, worker="w\udc80")
        rows = [row("a", "running"), row("b", "running"), row("a", "completed"), odd]
        stale = StepRecord(job_id, "z", 1, "running", run=run + 1)
        assert await store.record_steps([*rows, stale]) == [job_id]
        await store.cancel(job_id)
        steps = {s.routine: s for s in await store.steps(job_id)}
        assert sorted(steps) == ["a", "b", "c"]
        assert (steps["a"].status, steps["a"].completed_at) == ("completed", 2.0)
        assert steps["b"].status == steps["c"].status == "interrupted"
        assert math.isnan(steps["c"].progress) and steps["c"].worker == "w\udc80"
    finally:
        await store.close()


async def test_a_jobs_events_are_listed_and_deleted_whether_its_list_holds_refs_or_texts(
    redis_url: str,
) -> None:
    """A job's list holds its events' ids and kinds (their texts are in the store's event
    set); one an older version wrote holds the texts: both read the same and go with the job."""
    store = _store(redis_url)
    await store.open()
    client = aioredis.Redis.from_url(redis_url)
    try:
        ids = [i for i, _ in await store.submit_many([JobSpec("f", {}) for _ in range(2)])]
        jobs = (await store.claim("default", "w", limit=2, lease_s=30)).jobs
        await store.complete("w", [(j.id, j.token, {}) for j in jobs])
        before = {i: await store.events(job_id=i) for i in ids}
        assert [e.kind for e in before[ids[0]]] == ["queued", "running", "completed"]
        old = store.key("je", ids[1])  # as an older version wrote it
        texts = [t for t in await client.zrange(store.key("ev"), 0, -1) if ids[1].encode() in t]
        await client.delete(old)
        await client.hdel(store.key("j", ids[1]), "evs")
        await client.rpush(old, *texts)
        assert {i: await store.events(job_id=i) for i in ids} == before
        assert await store.clean(Retention(keep_completed_count=0)) == 2
        assert await store.events() == []
        assert await client.zcard(store.key("fin", "default")) == 0
    finally:
        await store.close()
        await client.aclose()


async def test_a_submitted_batch_leaves_each_job_as_submitting_one_at_a_time_would(redis_url: str) -> None:
    """A batch of jobs of two queues and two flows, due and delayed, with a priority and an
    idempotency key held twice in the batch: the same answers, counts, filtered lists (newest
    first), events (numbered in order) and claim order as the jobs submitted one by one."""
    batch, single = _store(redis_url), _store(redis_url)
    clock = [1000.0]
    for s in (batch, single):
        s.clock = lambda: clock[0]
        await s.open()

    def specs() -> list[JobSpec]:
        return [
            JobSpec("f", {"n": 0}),
            JobSpec("g", {"n": 1}, queue="other"),
            JobSpec("f", {"n": 2}, priority=5),
            JobSpec("g", {"n": 3}, delay_s=10.0),
            JobSpec("f", {"n": 4}, idempotency_key="k"),
            JobSpec("f", {"n": 5}, idempotency_key="k"),
            JobSpec("g", {"n": 6}, queue="other", delay_s=5.0),
        ]

    try:
        made = await batch.submit_many(specs())
        one = [(await single.submit_many([s]))[0] for s in specs()]
        assert [c for _, c in made] == [c for _, c in one] == [True] * 5 + [False, True]
        assert made[5][0] == made[4][0]

        async def seen(s: RedisStore, ids: list[str]) -> list[object]:
            name = {i: n for n, i in enumerate(dict.fromkeys(ids))}
            lists = [
                await s.list_jobs(**f)  # type: ignore[arg-type]
                for f in ({}, {"queue": "other"}, {"flow": "f"}, {"status": "queued"},
                          {"queue": "default", "status": "queued"})
            ]  # fmt: skip
            counts = sorted((c.queue, c.jobs["queued"], c.delayed) for c in await s.queue_counts())
            events = [(name[e.job_id], e.kind, e.data) for e in await s.events() if e.job_id]
            clock[0] = 1020.0
            claimed = [(await s.claim(q, "w", limit=10, lease_s=30)).jobs for q in ("default", "other")]
            clock[0] = 1000.0
            return [
                [[name[j.id] for j in jobs] for jobs in lists],
                counts,
                events,
                [[(name[j.id], j.inputs) for j in jobs] for jobs in claimed],
            ]

        got = await seen(batch, [i for i, _ in made])
        assert got == await seen(single, [i for i, _ in one])
        lists, counts, events, claimed = got
        assert lists == [[5, 4, 3, 2, 1, 0], [5, 1], [4, 2, 0], [5, 4, 3, 2, 1, 0], [4, 3, 2, 0]]
        assert counts == [("default", 4, 1), ("other", 2, 1)]
        assert [(n, kind) for n, kind, _ in events] == [(n, "queued") for n in range(6)]  # type: ignore[misc]
        assert claimed == [
            [(2, {"n": 2}), (0, {"n": 0}), (4, {"n": 4}), (3, {"n": 3})],
            [(1, {"n": 1}), (5, {"n": 6})],
        ]
        (c,) = [c for c in await batch.queue_counts() if c.queue == "default"]
        assert c.jobs["running"] == 4
    finally:
        await batch.close()
        await single.close()


async def test_a_jobs_events_kept_in_its_field_and_its_list_read_in_their_order(redis_url: str) -> None:
    """Submit, claim and completion keep a job's event refs in its hash, the other changes (a
    failure to retry, here) in its list: the job's events read in the order they happened,
    and all go with the job."""
    store = _store(redis_url)
    await store.open()
    try:
        job_id = await store.submit(
            JobSpec("f", {}, max_attempts=2, backoff=Backoff(initial_s=0.0, jitter=False))
        )
        (job,) = (await store.claim("default", "w", limit=1, lease_s=30)).jobs
        await store.fail(job_id, "w", job.token, "boom")
        (job,) = (await store.claim("default", "w", limit=1, lease_s=30)).jobs
        assert await store.complete("w", [(job_id, job.token, {})]) == []
        events = await store.events(job_id=job_id)
        assert [e.kind for e in events] == ["queued", "running", "retrying", "running", "completed"]
        assert [e.id for e in events] == sorted(e.id for e in events)
        assert [e.id for e in events] == [e.id for e in await store.events() if e.job_id == job_id]
        assert await store.clean(Retention(keep_completed_count=0)) == 1
        assert await store.events() == []
    finally:
        await store.close()


#: text a JSON writer must escape, and text past ASCII
ODD = 'k "q" \\ / \t\n\x01\x7f é 漢 \U0001f600 \\u0041'


async def test_a_claimed_job_is_the_job_the_store_holds_after_the_claim(redis_url: str) -> None:
    """The claim answers each job's hash as the claim leaves it (one JSON object, without
    the store's own fields): every field, of every kind, is the one read back after it —
    integers at the edges of 64 bits, an idempotency key, a node, a timeout, a backoff, a
    retry from the start, text JSON must escape (quotes, backslashes, control characters)."""
    store = _store(redis_url)
    await store.open()
    try:
        specs = [
            JobSpec(
                ODD,
                {"a.x": [2**64 - 1, -(2**63), 1e16, 0.1, "é 漢 \U0001f600", {"n": None}]},
                idempotency_key=ODD,
                timeout_s=1e-05,
                priority=3,
                backoff=Backoff(initial_s=0.5, factor=3.0, max_s=9.0, jitter=False),
                max_attempts=4,
            ),
            JobSpec("g", {}, node="n1", node_capacity=5),
        ]
        ids = [i for i, _ in await store.submit_many(specs)]
        first = (await store.claim("default", "w", limit=1, lease_s=30, node="n1")).jobs
        (one,) = (await store.claim("default", "w", limit=1, lease_s=30)).jobs
        await store.fail(one.id, "w", one.token, "boom", retry=False)
        await store.retry(one.id, from_start=True)
        claimed = first + (await store.claim("default", "w", limit=5, lease_s=30)).jobs
        assert sorted(j.id for j in claimed) == sorted(ids)
        for job in claimed:
            assert job == await store.get(job.id)
        by_id = {j.id: j for j in claimed}
        assert by_id[ids[0]].from_start and by_id[ids[0]].runs == 2 and by_id[ids[0]].idempotency_key == ODD
        assert [type(v) for v in by_id[ids[0]].inputs["a.x"]] == [int, int, float, float, str, dict]
        assert by_id[ids[1]].node == "n1" and by_id[ids[1]].status == "running"
        assert by_id[ids[0]].flow == ODD
    finally:
        await store.close()


async def test_a_claimed_jobs_numbers_past_14_digits_come_back_exact(redis_url: str) -> None:
    """Redis's cjson writes a Lua number with ``%.14g``: the claim's answer carries every
    number of a job as text (the hash's own strings, the script's ``int`` formatting), so none
    of them loses a digit — integers past 10**14 and 2**53 (priority, max_attempts, a node's
    capacity), a float of 17 significant digits (timeout; the claim's times equal the held ones)."""
    store = _store(redis_url)
    await store.open()
    try:
        big = 2**62 + 1
        spec = JobSpec(
            "g",
            {},
            priority=big,
            max_attempts=10**15 + 3,
            timeout_s=123456789.12345679,
            node="n1",
            node_capacity=10**17 + 7,
        )
        ((job_id, _),) = await store.submit_many([spec])
        (job,) = (await store.claim("default", "w", limit=1, lease_s=30.123456789012345, node="n1")).jobs
        assert job.priority == big and job.max_attempts == 10**15 + 3
        assert job.timeout_s == 123456789.12345679
        held = await store.get(job_id)
        assert held is not None and job == held
    finally:
        await store.close()


async def test_completed_outputs_come_back_as_written(redis_url: str) -> None:
    """Outputs of a completion batch read back equal and of the same types: non-finite floats
    (the json module's ``NaN``, ``Infinity``), ``None``, integers at the edges of 64 bits and
    past them, keys and texts past ASCII."""
    store = _store(redis_url)
    await store.open()
    try:
        outputs = [
            {"b.out": [math.nan, math.inf, -math.inf]},
            {"b.out": [None, {"k": None}]},
            {"b.out": [2**64 - 1, -(2**63), 2**70, 0.1, 1e16]},
            {"é 漢": ["\U0001f600 null", {"é": 1.5e-7}]},
        ]
        ids = [i for i, _ in await store.submit_many([JobSpec("f", {}) for _ in outputs])]
        jobs = {j.id: j for j in (await store.claim("default", "w", limit=9, lease_s=30)).jobs}
        done = [(i, jobs[i].token, o) for i, o in zip(ids, outputs, strict=True)]
        assert await store.complete("w", done) == []
        back = []
        for job_id in ids:
            job = await store.get(job_id)
            assert job is not None and job.outputs is not None
            back.append(job.outputs)
        nan, inf, minf = back[0]["b.out"]
        assert math.isnan(nan) and (inf, minf) == (math.inf, -math.inf)
        assert back[1:] == outputs[1:]
        assert [type(v) for v in back[2]["b.out"]] == [int, int, int, float, float]
    finally:
        await store.close()
