"""``Engine.submit_many(..., pool=, labels=)``: a batch of durable jobs dispatched to cluster
nodes in one transaction, on real Redis and PostgreSQL stores (docs/cluster.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

import weirflow as wf
from tests.durable.flows import one
from weirflow.cluster import Registry
from weirflow.durable import JobSpec, Store
from weirflow.errors import JobError

Make = Callable[..., Registry]


async def assigned(store: Store) -> Counter[str | None]:
    jobs = await store.list_jobs(limit=10_000)
    return Counter(j.node for j in jobs if j.status in ("queued", "running"))


def items(n: int) -> list[tuple[str, dict[str, list[dict[str, int]]]]]:
    return [("one", {"a.item": [{"n": i}]}) for i in range(n)]


async def test_submit_many_with_a_pool_spreads_the_batch_over_nodes_with_room(
    job_store: str, redis_url: str, registries: Make
) -> None:
    """Three nodes with 4 slots each: a batch of 10 goes to nodes, each within its capacity,
    spread by load; the next batch of 5 fills the 2 slots left and queues 3 unassigned; a
    node the cache thinks empty but the store holds nearly full is refused and the batch
    placed again within the room the store said it has."""
    admin = registries(redis_url)
    await admin.start()
    for name in ("n0", "n1", "n2"):
        await admin.register(name, pool="gpu", capacity=4, labels={"zone": "a"})
    await admin.register("other", pool="gpu", capacity=5, labels={"zone": "b"})
    reg = registries(redis_url)
    await reg.start()
    await reg.wait_revision(admin.revision, timeout_s=5)
    engine = wf.Engine(store=job_store, registry=reg)
    engine.register(one)
    async with engine:
        store = engine.store
        assert store is not None and engine.dispatcher is not None
        ids = await engine.submit_many(items(10), pool="gpu", labels={"zone": "a"})
        assert len(set(ids)) == 10
        counts = await assigned(store)
        assert sum(counts.values()) == 10 and set(counts) == {"n0", "n1", "n2"}
        assert max(counts.values()) - min(counts.values()) <= 1  # spread by load: 4, 3, 3
        jobs = [await store.get(i) for i in ids]
        assert all(j is not None and j.queue == "gpu" for j in jobs)  # the pool's queue

        more = await engine.submit_many(items(5), pool="gpu", labels={"zone": "a"})
        counts = await assigned(store)
        assert counts == Counter({"n0": 4, "n1": 4, "n2": 4, None: 3})
        assert len(set(ids + more)) == 15

        # a node whose heartbeat says it is empty but whose jobs in the store leave room for
        # one: the batch is refused (nothing written), then placed again with one job on it
        for name in ("t0", "t1"):
            beat = await admin.register(name, pool="tpu", capacity=3)
        await reg.wait_revision(beat.revision, timeout_s=5)
        await store.submit_many(
            [JobSpec(flow="one", inputs={"a.item": [{}]}, queue="tpu", node="t0", node_capacity=3)] * 2
        )
        refused, unassigned = engine.dispatcher.refused, engine.dispatcher.unassigned
        await engine.submit_many(items(4), pool="tpu")
        counts = await assigned(store)
        assert (counts["t0"], counts["t1"]) == (3, 3)  # every slot used, none past its capacity
        assert engine.dispatcher.refused == refused + 1 and engine.dispatcher.unassigned == unassigned

        # a queue of its own, and the options of a pair apply to each job
        own = await engine.submit_many(items(1), pool="gpu", queue="elsewhere", priority=7)
        record = await store.get(own[0])
        assert record is not None and (record.queue, record.priority, record.node) == (
            "elsewhere",
            7,
            "other",
        )


async def test_submit_many_with_labels_but_no_pool_or_no_registry_is_a_job_error(job_store: str) -> None:
    engine = wf.Engine(store=job_store)
    engine.register(one)
    async with engine:
        with pytest.raises(JobError, match="needs the cluster's registry"):
            await engine.submit_many(items(2), pool="gpu")
        with pytest.raises(JobError, match="give pool= too"):
            await engine.submit_many(items(2), labels={"zone": "a"})
        assert await engine.store.list_jobs() == []  # type: ignore[union-attr]
