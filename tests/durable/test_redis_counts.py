"""The Redis store's counts and indexes (``redis_lua.track``, ``nj_add``/``nj_rem``): ``queue_counts``,
filtered or offset job lists and ``assigned_nodes`` read only what they answer with, and say the
same as a full recount after any mix of changes, including takeovers, retries, reassignments,
retention and a store an older version wrote."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from weirflow.durable import JobSpec
from weirflow.durable.models import FINISHED, QUEUED, RUNNING, STATUSES, Retention, counts_of
from weirflow.durable.redis_store import RedisStore
from weirflow.errors import JobError, LeaseLostError
from weirflow.flow.policy import Backoff

from .conftest import FakeClock

QUEUES = ("a", "b")
FLOWS = ("f1", "f2")
NODES = ("n1", "n:2")
OPS = (
    "submit",
    "submit_delayed",
    "claim",
    "complete",
    "fail",
    "fail_final",
    "release",
    "cancel",
    "retry",
    "expire",
    "recover",
    "clean",
    "reassign",
    "drop_index",
    "reindex_step",
    "reindex_step",
    "advance",
)


async def _index_keys(store: RedisStore) -> list[bytes]:
    client = aioredis.Redis.from_url(store._url)
    try:
        p = store.prefix
        found = [k async for k in client.scan_iter(f"{p}:ix*")]
        found += [k async for k in client.scan_iter(f"{p}:cnt:*")]
        found += [k async for k in client.scan_iter(f"{p}:q:*:qat")]
        return found
    finally:
        await client.aclose()


async def _drop_index(store: RedisStore) -> None:
    """What a store an older version wrote looks like: no counts, no indexes, no version."""
    keys = await _index_keys(store)
    if keys:
        await store._do("delete", *keys)


async def _all_jobs(store: RedisStore) -> list[Any]:
    ids = [i.decode() for i in await store._do("zrange", store.key("jobs"), 0, -1)]
    return await store._jobs(ids)


async def _check(store: RedisStore, rnd: random.Random, now: float) -> None:
    jobs = await _all_jobs(store)
    assert await store.queue_counts() == counts_of(jobs, now)
    assigned = {j.node for j in jobs if j.node is not None and j.status in (QUEUED, RUNNING)}
    assert await store.assigned_nodes() == sorted(assigned)
    newest = [j.id for j in await store.list_jobs(limit=10_000)]
    by_id = {j.id: j for j in jobs}
    assert sorted(newest) == sorted(by_id)
    for _ in range(4):
        queue = rnd.choice((None, *QUEUES))
        status = rnd.choice((None, *STATUSES))
        flow = rnd.choice((None, *FLOWS))
        offset, limit = rnd.randrange(0, 6), rnd.randrange(1, 8)
        want = [
            i
            for i in newest
            if (queue is None or by_id[i].queue == queue)
            and (status is None or by_id[i].status == status)
            and (flow is None or by_id[i].flow == flow)
        ][offset : offset + limit]
        got = await store.list_jobs(queue=queue, status=status, flow=flow, offset=offset, limit=limit)
        assert [j.id for j in got] == want, (queue, status, flow, offset, limit)


async def _play(url: str, seed: int, ops: list[str]) -> None:
    clock = FakeClock()
    rnd = random.Random(seed)
    store = RedisStore(url, clock=clock, prefix=f"t{uuid.uuid4().hex[:8]}")
    await store.open()
    held: dict[str, tuple[str, int]] = {}  # job id -> (worker, token)
    try:
        for n, op in enumerate(ops):
            queue = rnd.choice(QUEUES)
            if op in ("submit", "submit_delayed"):
                node = rnd.choice((None, None, *NODES))
                await store.submit_once(
                    JobSpec(
                        flow=rnd.choice(FLOWS),
                        inputs={},
                        queue=queue,
                        max_attempts=rnd.choice((1, 2, 3)),
                        backoff=Backoff(initial_s=rnd.choice((0.0, 5.0)), jitter=False),
                        delay_s=rnd.choice((3.0, 30.0)) if op == "submit_delayed" else 0.0,
                        priority=rnd.randrange(3),
                        idempotency_key=rnd.choice((None, None, f"k{rnd.randrange(4)}")),
                        node=node,
                        node_capacity=1000 if node else None,
                    )
                )
            elif op == "claim":
                worker = rnd.choice(("w1", "w2"))
                claim = await store.claim(
                    queue, worker, limit=rnd.randrange(1, 4), lease_s=10.0, node=rnd.choice((None, *NODES))
                )
                for job in claim.jobs:
                    held[job.id] = (worker, job.runs)
            elif op in ("complete", "fail", "fail_final", "release") and held:
                job_id = rnd.choice(sorted(held))
                worker, token = held.pop(job_id)
                try:
                    if op == "complete":
                        await store.complete(worker, [(job_id, token, {"out": 1})])
                    elif op == "release":
                        await store.release({job_id: token}, worker)
                    else:
                        await store.fail(job_id, worker, token, "boom", retry=op == "fail")
                except LeaseLostError:  # (taken over meanwhile: refused)
                    pass
            elif op in ("cancel", "retry"):
                jobs = await _all_jobs(store)
                if jobs:
                    job = rnd.choice(jobs)
                    try:
                        if op == "cancel":
                            await store.cancel(job.id)
                        else:
                            await store.retry(job.id, from_start=rnd.random() < 0.5)
                    except JobError:  # (not in a state that allows it)
                        pass
            elif op == "expire":  # leases run out, the sweeper takes the jobs over
                clock.advance(11.0)
                await store.sweep("sweeper", max_stalls=rnd.choice((1, 3)))
            elif op == "recover":
                await store.recover(rnd.choice(("w1", "w2")), max_stalls=2)
            elif op == "clean":
                await store.clean(Retention(keep_completed_count=rnd.randrange(3), keep_failed_s=1.0))
            elif op == "reassign":
                await store.reassign(rnd.choice(NODES))
            elif op == "drop_index":
                await _drop_index(store)
            elif op == "reindex_step":  # part of the rebuild, the other changes going on around it
                await store._run("REINDEX", ["2"])
            elif op == "advance":
                clock.advance(rnd.choice((1.0, 4.0, 31.0)))
            if n % 10 == 9:
                await _check(store, rnd, clock.now)
        await _check(store, rnd, clock.now)
        running = [j for j in await _all_jobs(store) if j.status == RUNNING]
        finished = [j for j in await _all_jobs(store) if j.status in FINISHED]
        assert len(running) + len(finished) + sum(c.jobs[QUEUED] for c in await store.queue_counts()) == len(
            await _all_jobs(store)
        )
    finally:
        await store.close()


@pytest.mark.parametrize("seed", range(12))
def test_counts_and_filtered_lists_equal_a_full_recount_after_any_changes(redis_url: str, seed: int) -> None:
    """A random sequence of 120 changes (each seed its own), checked every 10 changes."""
    rnd = random.Random(seed)
    ops = [rnd.choice(OPS) for _ in range(120)]
    asyncio.run(_play(redis_url, seed, ops))


async def _commands(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


@pytest.mark.parametrize("what", ["counts", "failed", "offset", "queue", "assigned"])
async def test_counts_and_filtered_lists_read_no_job_they_do_not_answer_with(
    redis_url: str, what: str
) -> None:
    """The commands Redis runs for a count, a filtered list, a deep offset or the assigned nodes
    are as many with 600 jobs in the store as with 30 (they read every job before; the assigned
    nodes were found by a SCAN of the keyspace)."""
    client = aioredis.Redis.from_url(redis_url)
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    await store.open()
    try:
        spent = []
        for total in (30, 600):
            if not spent:  # 10 jobs in b, 3 of a's failed
                await store.submit_many([JobSpec(flow="f1", inputs={}, queue="b") for _ in range(10)])
                await store.submit_many([JobSpec(flow="f1", inputs={}, queue="a") for _ in range(20)])
                if what == "assigned":
                    await store.submit(JobSpec(flow="f1", inputs={}, queue="c", node="n1", node_capacity=5))
                for job in (await store.claim("a", "w", limit=3, lease_s=60.0)).jobs:
                    await store.fail(job.id, "w", job.runs, "boom", retry=False)
            else:
                await store.submit_many([JobSpec(flow="f1", inputs={}, queue="a") for _ in range(570)])
            await store.queue_counts()  # (a store an older version wrote is indexed once, here)
            before = await _commands(client)
            if what == "counts":
                assert sum(sum(c.jobs.values()) for c in await store.queue_counts()) == total
            elif what == "failed":
                assert len(await store.list_jobs(status="failed", limit=100)) == 3
            elif what == "offset":
                assert len(await store.list_jobs(offset=total - 5, limit=10)) == 5
            elif what == "queue":
                assert len(await store.list_jobs(queue="b", limit=100)) == 10
            else:
                assert await store.assigned_nodes() == ["n1"]
            spent.append(await _commands(client) - before)
        assert spent[1] == spent[0], spent
    finally:
        await store.close()
        await client.aclose()


async def test_a_store_of_index_version_2_is_indexed_again_without_the_keys_it_dropped(
    redis_url: str,
) -> None:
    """Index version "2" kept ``P:ix:s:STATUS`` and ``P:ix:qs:Q:running`` too: such a store is
    indexed again once, those keys go, and lists by status (running too) and counts answer
    from the others."""
    client = aioredis.Redis.from_url(redis_url)
    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    await store.open()
    try:
        ids = [i for i, _ in await store.submit_many([JobSpec("f1", {}, queue=q) for q in "abab"])]
        running = (await store.claim("a", "w", limit=1, lease_s=60.0)).jobs
        (failed,) = (await store.claim("b", "w", limit=1, lease_s=60.0)).jobs
        await store.fail(failed.id, "w", failed.token, "boom", retry=False)
        # as index version "2" left it: its version, and the keys it kept besides
        await client.set(store.key("ixv"), "2")
        await client.zadd(store.key("ix", "s", "queued"), {ids[2]: 3, ids[3]: 4, "gone": 9})
        await client.zadd(store.key("ix", "s", "failed"), {failed.id: 2})
        await client.zadd(store.key("ix", "qs", "a", "running"), {running[0].id: 1, "gone": 9})
        assert [j.id for j in await store.list_jobs(status="queued")] == [ids[3], ids[2]]
        assert await client.get(store.key("ixv")) == b"3"
        assert [k async for k in client.scan_iter(f"{store.prefix}:ix:s:*")] == []
        assert [k async for k in client.scan_iter(f"{store.prefix}:ix:qs:*:running")] == []
        assert [j.id for j in await store.list_jobs(status="running")] == [running[0].id]
        assert [j.id for j in await store.list_jobs(status="failed", queue="b")] == [failed.id]
        assert [j.id for j in await store.list_jobs(status="queued", offset=1)] == [ids[2]]
        counts = {c.queue: c.jobs for c in await store.queue_counts()}
        assert (counts["a"]["queued"], counts["a"]["running"], counts["b"]["failed"]) == (1, 1, 1)
    finally:
        await store.close()
        await client.aclose()
