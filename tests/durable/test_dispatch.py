"""Durable jobs dispatched to cluster nodes: ``Engine.submit(pool=, labels=)`` through the
registry's cache and the store's atomic capacity check, on real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import psycopg
import pytest

import weirflow as wf
from weirflow.cluster import Dispatcher, Reassigner, Registry
from weirflow.durable import JobSpec, Store, open_store
from weirflow.errors import JobError

from .pgserver import PgServer

Make = Callable[..., Registry]


def job(**kw: object) -> JobSpec:
    return JobSpec(flow="one", inputs={"a.item": [{}]}, queue="gpu", **kw)  # type: ignore[arg-type]


async def assigned(store: Store) -> Counter[str | None]:
    jobs = await store.list_jobs(limit=10_000)
    return Counter(j.node for j in jobs if j.status in ("queued", "running"))


async def test_concurrent_dispatches_never_pass_a_nodes_capacity(
    job_store: str, redis_url: str, registries: Make
) -> None:
    """Two dispatchers, each with its own registry cache and store connection, submit 60
    jobs at once to a pool of three nodes with 3 slots each: every node gets exactly its
    capacity (the caches say every node is empty all along: only the store's check holds
    them back), and the rest are queued unassigned."""
    admin = registries(redis_url)
    await admin.start()
    for i in range(3):
        await admin.register(f"n{i}", pool="gpu", capacity=3, labels={"zone": "a"})
    stores = [open_store(job_store), open_store(job_store)]
    dispatchers = []
    for store in stores:
        await store.open()
        reg = registries(redis_url)
        await reg.start()
        await reg.wait_revision(admin.revision, timeout_s=5)
        dispatchers.append(Dispatcher(reg))
    try:
        made = await asyncio.gather(
            *(
                dispatchers[i % 2].submit(stores[i % 2], job(), pool="gpu", labels={"zone": "a"})
                for i in range(60)
            )
        )
        assert len({job_id for job_id, _ in made}) == 60
        counts = await assigned(stores[0])
        assert counts == Counter({"n0": 3, "n1": 3, "n2": 3, None: 51})
        assert sum(d.placed for d in dispatchers) == 9
        assert sum(d.unassigned for d in dispatchers) == 51
        # a node whose heartbeat says it has room but whose store count is full is refused,
        # then skipped by that dispatcher until its next heartbeat
        await dispatchers[0].submit(stores[0], job(), pool="gpu")  # (learns that all three are full)
        before = dispatchers[0].refused
        await dispatchers[0].submit(stores[0], job(), pool="gpu")
        assert dispatchers[0].refused == before  # all three are known full: none is asked
        beat = await admin.heartbeat("n1", running=0)
        await dispatchers[0].registry.wait_revision(beat.revision, timeout_s=5)
        await dispatchers[0].submit(stores[0], job(), pool="gpu")
        assert dispatchers[0].refused == before + 1  # n1 asked again after its heartbeat
    finally:
        for store in stores:
            await store.close()


async def test_engine_submit_with_a_pool_assigns_a_matching_node(
    job_store: str, redis_url: str, registries: Make
) -> None:
    from tests.durable.flows import one

    admin = registries(redis_url)
    await admin.start()
    await admin.register("a1", pool="gpu", capacity=1, labels={"zone": "a"})
    await admin.register("b1", pool="gpu", capacity=5, labels={"zone": "b"})
    await admin.register("c1", pool="cpu", capacity=5, labels={"zone": "a"})
    reg = registries(redis_url)
    engine = wf.Engine(store=job_store, registry=reg)
    engine.register(one)
    await reg.start()
    await reg.wait_revision(admin.revision, timeout_s=5)
    async with engine:
        first = await engine.submit("one", {"a.item": [{}]}, pool="gpu", labels={"zone": "a"})
        info = await engine.get_job(first)
        record = await engine.store.get(first)  # type: ignore[union-attr]
        assert record is not None and (record.node, record.queue) == ("a1", "gpu")
        assert info.node == "a1" and info.to_dict()["node"] == "a1"
        # a1 is full: the next zone-a gpu job waits in the pool, unassigned
        second = await engine.submit("one", {"a.item": [{}]}, pool="gpu", labels={"zone": "a"})
        record = await engine.store.get(second)  # type: ignore[union-attr]
        assert record is not None and (record.node, record.queue) == (None, "gpu")
        other = await engine.submit("one", {"a.item": [{}]}, pool="gpu", queue="elsewhere")
        record = await engine.store.get(other)  # type: ignore[union-attr]
        assert record is not None and (record.node, record.queue) == ("b1", "elsewhere")
        with pytest.raises(JobError, match="give pool= too"):
            await engine.submit("one", {"a.item": [{}]}, labels={"zone": "a"})
        with pytest.raises(JobError, match="pool must be"):
            await engine.submit("one", {"a.item": [{}]}, pool="")


async def test_a_pool_without_a_registry_is_a_job_error() -> None:
    from tests.durable.flows import one

    engine = wf.Engine(store="memory://")
    engine.register(one)
    async with engine:
        with pytest.raises(JobError, match="registry="):
            await engine.submit("one", {"a.item": [{}]}, pool="gpu")
        plain = await engine.submit("one", {"a.item": [{}]})
        assert (await engine.get_job(plain)).node is None
    with pytest.raises(JobError, match="give store= too"):
        wf.Engine(registry="redis://127.0.0.1:1/0")


async def test_a_gone_nodes_queued_jobs_are_reassigned_once_by_many_watchers(
    job_store: str, redis_url: str, registries: Make
) -> None:
    admin = registries(redis_url, ttl_s=30)
    await admin.start()
    await admin.register("dead", pool="gpu", capacity=4)
    await admin.register("alive", pool="gpu", capacity=4)
    stores = [open_store(job_store) for _ in range(3)]
    for s in stores:
        await s.open()
    store = stores[0]
    try:
        ids = [await store.submit(job(node="dead", node_capacity=4)) for _ in range(3)]
        mine = await store.submit(job(node="alive", node_capacity=4))
        watchers = []
        for s in stores:  # three workers, each with its registry cache and store connection
            reg = registries(redis_url)
            await reg.start()
            watchers.append(Reassigner(reg, s, node_id="alive"))
        assert [await w.run_once() for w in watchers] == [[], [], []]  # nobody is gone
        await admin.remove("dead")  # a tombstone
        for w in watchers:
            await w.registry.wait_for(lambda w=w: w.registry.get("dead") is None, timeout_s=5)
        moved = await asyncio.gather(*(w.run_once() for w in watchers))
        assert sorted(j for m in moved for j in m) == sorted(ids)  # each job once
        assert sum(w.reassigned for w in watchers) == 3
        for job_id in ids:
            record = await store.get(job_id)
            assert record is not None and record.node is None
        kept = await store.get(mine)
        assert kept is not None and kept.node == "alive"
    finally:
        for s in stores:
            await s.close()


async def test_an_engine_given_a_registry_url_starts_and_closes_it(
    job_store: str, redis_url: str, registries: Make
) -> None:
    from tests.durable.flows import one
    from tests.redisserver import free_port

    admin = registries(redis_url)
    await admin.start()
    await admin.register("n1", pool="gpu", capacity=2)
    engine = wf.Engine(store=job_store, registry=redis_url)
    engine.register(one)
    async with engine:
        job_id = await engine.submit("one", {"a.item": [{}]}, pool="gpu")
        assert (await engine.get_job(job_id)).node == "n1"
        assert engine.dispatcher is not None and engine.dispatcher.placed == 1
    # Redis unreachable: the engine still starts, and a submit with a pool queues the job
    # unassigned instead of failing
    down = wf.Engine(store=job_store, registry=f"redis://127.0.0.1:{free_port()}/0")
    down.register(one)
    async with down:
        job_id = await down.submit("one", {"a.item": [{}]}, pool="gpu")
        info = await down.get_job(job_id)
        assert (info.node, info.status) == (None, "queued")


@pytest.mark.slow  # three processes: a few seconds on 2 cores
async def test_dispatches_from_several_processes_never_pass_a_nodes_capacity(
    job_store: str, redis_url: str, registries: Make
) -> None:
    import sys

    from tests.durable.procs import ROOT

    admin = registries(redis_url)
    await admin.start()
    for i in range(3):
        await admin.register(f"n{i}", pool="gpu", capacity=4)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.durable.dispatch_peer",
            job_store,
            redis_url,
            "30",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert sum(int(out.split()[-1]) for out, _ in outs) == 12  # (the last line: logs go to stdout too)
    store = open_store(job_store)
    await store.open()
    try:
        assert await assigned(store) == Counter({"n0": 4, "n1": 4, "n2": 4, None: 78})
    finally:
        await store.close()


async def test_a_nodes_claim_waits_for_a_submit_to_the_node_in_progress(pg: PgServer) -> None:
    """PostgreSQL: a node's claim, which makes unassigned jobs its own, takes the node's lock
    as submits to it do. Here a submit of two jobs to n1 (capacity 2) is caught mid-way: its
    rows are inserted under the node's lock, not yet committed. The claim waits for it, then
    takes one of those two jobs, so n1 holds 2 jobs. Without the lock the claim would not
    see them, take the unassigned job, and n1 would hold 3."""
    url = pg.new_database()
    store = open_store(url)
    await store.open()
    try:
        free = await store.submit(JobSpec(flow="one", inputs={}, queue="gpu"))
        async with await psycopg.AsyncConnection.connect(url) as conn:  # (a transaction)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("weirflow:node:n1",))
            for job_id in ("a1", "a2"):
                await conn.execute(
                    "INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, run_at,"
                    " created_at, node) VALUES (%s, 'one', '{}', 'gpu', 'queued', 3, %s, 0, 0, 'n1')",
                    (job_id, '{"initial_s": 1, "factor": 2, "max_s": 60, "jitter": false}'),
                )
            claim = asyncio.create_task(store.claim("gpu", "w-n1", limit=1, lease_s=30, node="n1"))
            done, _ = await asyncio.wait({claim}, timeout=0.5)
            assert not done  # waiting for the submit's lock
            await conn.commit()
        [got] = (await claim).jobs
        assert got.id in ("a1", "a2")
        record = await store.get(free)
        assert record is not None and record.node is None and record.status == "queued"
        assert await assigned(store) == Counter({"n1": 2, None: 1})
    finally:
        await store.close()
