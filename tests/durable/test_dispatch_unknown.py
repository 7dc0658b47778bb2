"""Jobs assigned to a node the registry does not know at all (its tombstone long gone from
Redis and every cache) are given back by the ``Reassigner`` after a grace period, while a
node that registers within it keeps its jobs; on real Redis and PostgreSQL stores."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from weirflow.cluster import Reassigner, Registry
from weirflow.durable import JobSpec, Store, open_store

Make = Callable[..., Registry]


class Clock:
    """The reassigner's clock, moved by the test (the grace is time, not state)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def opened_store(job_store: str) -> AsyncIterator[Store]:
    """A fresh, open store on a real Redis or a real PostgreSQL."""
    store = open_store(job_store)
    await store.open()
    yield store
    await store.close()


def on(node: str) -> JobSpec:
    return JobSpec(flow="one", inputs={"a.item": [{}]}, queue="gpu", node=node, node_capacity=10)


async def test_jobs_of_a_node_the_registry_never_knew_are_reassigned_after_the_grace(
    opened_store: Store, redis_url: str, registries: Make
) -> None:
    admin = registries(redis_url)
    await admin.start()
    await admin.register("live", pool="gpu", capacity=10)
    ghost = [await opened_store.submit(on("ghost")) for _ in range(2)]  # a node long forgotten
    kept = [await opened_store.submit(on("live")), await opened_store.submit(on("fresh"))]
    assert await opened_store.assigned_nodes() == ["fresh", "ghost", "live"]

    reg = registries(redis_url, ttl_s=5)
    await reg.start()
    await reg.wait_revision(admin.revision, timeout_s=5)
    clock = Clock()
    reassigner = Reassigner(reg, opened_store, clock=clock)  # (grace and interval: the ttl, 5 s)
    assert await reassigner.run_once() == []  # ghost and fresh: unknown from now on
    clock.now += 4.0
    assert await reassigner.run_once() == []  # (not asked again before the interval)

    # "fresh" registers within the grace (its dispatcher heard of it first): it keeps its job
    node = await admin.register("fresh", pool="gpu", capacity=10)
    await reg.wait_revision(node.revision, timeout_s=5)
    clock.now += 1.5
    assert sorted(await reassigner.run_once()) == sorted(ghost)
    assert reassigner.reassigned == 2
    for job_id in ghost:
        record = await opened_store.get(job_id)
        assert record is not None and (record.status, record.node) == ("queued", None)
        assert [e.data for e in await opened_store.events(job_id=job_id, kind="reassigned")] == [
            {"node": "ghost"}
        ]
    for job_id, node_id in zip(kept, ("live", "fresh"), strict=True):
        record = await opened_store.get(job_id)
        assert record is not None and record.node == node_id
    clock.now += 10.0
    assert await reassigner.run_once() == []  # nothing left on ghost; the others are known
    assert await opened_store.assigned_nodes() == ["fresh", "live"]


async def test_absence_counts_only_while_the_registry_is_normal(
    opened_store: Store, redis_url: str, registries: Make
) -> None:
    """A registry that has not listed (``starting``) knows nothing: it must not take every
    node's jobs for a gone node's, however long it stays so."""
    await opened_store.submit(on("somewhere"))
    reg = registries(redis_url, ttl_s=5)  # not started: never listed
    clock = Clock()
    reassigner = Reassigner(reg, opened_store, clock=clock)
    for _ in range(3):
        assert await reassigner.run_once() == []
        clock.now += 10.0
    await reg.start()
    assert await reassigner.run_once() == []  # unknown from now on, not from before
    clock.now += 5.0
    assert len(await reassigner.run_once()) == 1


async def test_assigned_nodes_are_those_of_queued_and_running_jobs(store: Store) -> None:
    """``Store.assigned_nodes`` on every backend: the nodes queued or running jobs are
    assigned to; a node whose last job finished, or was reassigned, is not among them."""
    assert await store.assigned_nodes() == []
    await store.submit(JobSpec(flow="one", inputs={}, queue="gpu"))  # unassigned
    a = await store.submit(on("a:1"))  # (ids may hold ':', as worker ids do)
    await store.submit(on("b*"))
    assert await store.assigned_nodes() == ["a:1", "b*"]
    claim = await store.claim("gpu", "a:1", limit=1, lease_s=30, node="a:1")
    (job,) = claim.jobs
    assert job.id == a and await store.assigned_nodes() == ["a:1", "b*"]  # running on a:1
    assert await store.complete("a:1", [(job.id, job.token, {})]) == []
    assert await store.assigned_nodes() == ["b*"]
    await store.reassign("b*")
    assert await store.assigned_nodes() == []
