"""The shared store suite, nodes: jobs assigned to a node within its capacity, claims by a
node, and reassigning a gone node's jobs — on memory, SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.errors import JobError, NodeFullError

from .conftest import FakeClock, StoreFactory


def spec(node: str | None = None, capacity: int | None = None, **kw: object) -> JobSpec:
    cap = capacity if capacity is not None else (2 if node is not None else None)
    return JobSpec(flow="f", inputs={"a.x": [1]}, node=node, node_capacity=cap, **kw)  # type: ignore[arg-type]


async def claim(
    store: Store, node: str | None, n: int = 10, worker: str | None = None
) -> list[wf.durable.JobRecord]:
    got = await store.claim("default", worker or f"w-{node}", limit=n, lease_s=30, node=node)
    return got.jobs


async def assigned(store: Store, node: str) -> int:
    jobs = await store.list_jobs(limit=10_000)
    return sum(1 for j in jobs if j.node == node and j.status in ("queued", "running"))


def test_a_spec_with_a_node_needs_its_capacity() -> None:
    with pytest.raises(JobError, match="node_capacity"):
        JobSpec(flow="f", inputs={}, node="n1")
    with pytest.raises(JobError, match="node_capacity"):
        JobSpec(flow="f", inputs={}, node="n1", node_capacity=0)
    with pytest.raises(JobError, match="give node too"):
        JobSpec(flow="f", inputs={}, node_capacity=3)
    with pytest.raises(JobError, match="node"):
        JobSpec(flow="f", inputs={}, node="", node_capacity=3)


async def test_a_job_assigned_to_a_node_goes_only_to_that_node(store: Store) -> None:
    job_id = await store.submit(spec("n1"))
    job = await store.get(job_id)
    assert job is not None and job.node == "n1" and job.status == "queued"
    assert await claim(store, None) == []  # a worker that is no node takes unassigned jobs only
    assert await claim(store, "n2") == []
    [got] = await claim(store, "n1")
    assert (got.id, got.node, got.worker_id) == (job_id, "n1", "w-n1")


async def test_a_node_takes_its_own_jobs_first_then_unassigned_ones_which_become_its_own(
    store: Store, clock: FakeClock
) -> None:
    free = await store.submit(spec(priority=5))
    clock.advance(1)
    mine = await store.submit(spec("n1"))
    clock.advance(1)
    theirs = await store.submit(spec("n2"))
    assert [j.id for j in await claim(store, "n1", 1)] == [mine]
    [got] = await claim(store, "n1", 5)
    assert got.id == free and got.node == "n1"
    record = await store.get(free)
    assert record is not None and record.node == "n1"
    assert [j.id for j in await claim(store, "n2")] == [theirs]


async def test_submit_refuses_a_job_past_the_nodes_capacity(store: Store) -> None:
    first = await store.submit(spec("n1", 2))
    await store.submit(spec("n1", 2))
    with pytest.raises(NodeFullError) as refused:
        await store.submit(spec("n1", 2))
    assert (refused.value.node, refused.value.capacity, refused.value.assigned) == ("n1", 2, 2)
    assert len(await store.list_jobs()) == 2  # nothing written
    await store.submit(spec("n2", 2))  # another node has room
    # running jobs count too; a finished one frees its slot
    [a, b] = await claim(store, "n1")
    with pytest.raises(NodeFullError):
        await store.submit(spec("n1", 2))
    assert await store.complete("w-n1", [(a.id, a.token, {})]) == []
    third = await store.submit(spec("n1", 2))
    await store.cancel(third)
    await store.submit(spec("n1", 2))  # a cancelled job frees its slot too
    assert await assigned(store, "n1") == 2 and first in (a.id, b.id)


async def test_a_batch_with_a_job_past_capacity_writes_nothing(store: Store) -> None:
    with pytest.raises(NodeFullError):
        await store.submit_many([spec(), spec("n1", 2), spec("n1", 2), spec("n1", 2)])
    assert await store.list_jobs() == []
    made = await store.submit_many([spec("n1", 2), spec(), spec("n1", 2)])
    assert all(created for _, created in made) and await assigned(store, "n1") == 2
    # a key held already makes no job, so it takes no slot: the submit answers as before
    keyed = await store.submit_many([spec("n2", 1, idempotency_key="k")])
    again = await store.submit_many([spec("n2", 1, idempotency_key="k"), spec("n2", 1, idempotency_key="k")])
    assert again == [(keyed[0][0], False), (keyed[0][0], False)]


async def test_concurrent_submits_to_one_node_never_pass_its_capacity(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]

    async def submit(i: int) -> bool:
        try:
            await stores[i % 3].submit(spec("n1", 5))
        except NodeFullError:
            return False
        return True

    made = await asyncio.gather(*(submit(i) for i in range(40)))
    assert sum(made) == 5
    assert await assigned(stores[0], "n1") == 5


async def test_claims_and_submits_of_one_node_at_once_stay_within_its_capacity(
    make_store: StoreFactory,
) -> None:
    """A node's claim that makes unassigned jobs its own races submits assigned to it: the
    node's queued and running jobs still never pass its capacity."""
    stores = [await make_store() for _ in range(3)]
    await stores[0].submit_many([spec() for _ in range(6)])

    async def submit(i: int) -> None:
        with contextlib.suppress(NodeFullError):
            await stores[i % 3].submit(spec("n1", 4))

    async def take() -> None:
        # the worker asks for what its capacity leaves (Worker does: capacity - running)
        await stores[1].claim("default", "w-n1", limit=2, lease_s=30, node="n1")

    await asyncio.gather(*(submit(i) for i in range(12)), take())
    assert await assigned(stores[0], "n1") <= 4


async def test_reassign_gives_a_nodes_queued_jobs_back_once(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    queued = [await stores[0].submit(spec("n1", 4)) for _ in range(3)]
    running = await stores[0].submit(spec("n1", 4))
    other = await stores[0].submit(spec("n2", 4))
    taken = await stores[0].claim("default", "w-n1", limit=1, lease_s=30, node="n1")
    assert [j.id for j in taken.jobs] == [queued[0]]
    queued = [*queued[1:], running]  # (the first queued one is running now)
    moved = await asyncio.gather(*(stores[i % 3].reassign("n1") for i in range(6)))
    assert sorted(j for ids in moved for j in ids) == sorted(queued)  # each job once, in all
    for job_id in queued:
        job = await stores[0].get(job_id)
        assert job is not None and job.node is None and job.status == "queued"
        assert [e.data for e in await stores[0].events(job_id=job_id, kind="reassigned")] == [{"node": "n1"}]
    still = await stores[0].get(taken.jobs[0].id)
    assert still is not None and (still.status, still.node) == ("running", "n1")
    mine = await stores[0].get(other)
    assert mine is not None and mine.node == "n2"
    # back in the pool: a plain worker takes them, and the node's slots are free
    assert sorted(j.id for j in await claim(stores[0], None)) == sorted(queued)
    assert await stores[0].reassign("n1") == []
    assert await stores[0].reassign("never-seen") == []


async def test_a_job_back_in_the_queue_goes_back_to_the_pool(store: Store, clock: FakeClock) -> None:
    """After a stall, a retry after failure, a release or a manual retry a job is unassigned:
    any node may take it, and it no longer holds a slot of its old node."""
    backoff = wf.Backoff(initial_s=0.0, factor=1.0, max_s=0.0, jitter=False)
    ids = [await store.submit(spec("n1", 4, backoff=backoff)) for _ in range(4)]
    jobs = {j.id: j for j in await claim(store, "n1")}
    assert sorted(jobs) == sorted(ids)
    stall, fail, release, cancel = ids
    await store.fail(fail, "w-n1", jobs[fail].token, "boom")  # retried: attempts remain
    await store.release({release: jobs[release].token}, "w-n1")
    await store.cancel(cancel)
    await store.retry(cancel)
    clock.advance(31)
    assert await store.renew("w-n1", {j: jobs[j].token for j in (fail, release, cancel)}, 30) == []
    report = await store.sweep("sweeper")
    assert report is not None and report.requeued == [stall]
    for job_id in ids:
        job = await store.get(job_id)
        assert job is not None and job.status == "queued" and job.node is None, job_id
    assert await assigned(store, "n1") == 0
    assert sorted(j.id for j in await claim(store, "n2")) == sorted(ids)


async def test_a_delayed_job_of_a_node_waits_then_goes_to_it(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec("n1", 1, delay_s=10))
    with pytest.raises(NodeFullError):  # a delayed job holds its slot
        await store.submit(spec("n1", 1))
    assert await claim(store, "n1") == []
    clock.advance(11)
    assert await claim(store, "n2") == [] and await claim(store, None) == []
    assert [j.id for j in await claim(store, "n1")] == [job_id]


async def test_a_reassigned_delayed_job_is_anyones_when_due(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec("n1", 1, delay_s=10))
    assert await store.reassign("n1") == [job_id]
    clock.advance(11)
    assert [j.id for j in await claim(store, None)] == [job_id]
