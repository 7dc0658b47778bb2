"""Pausing a durable queue (``Store.pause_queue``): its jobs are not claimed until it is
resumed, on every backend; running jobs go on, submits are queued, a resume wakes the
idle workers."""

from __future__ import annotations

import asyncio

from weirflow.durable import JobSpec, Store

from .conftest import FakeClock, StoreFactory


def spec(queue: str = "default") -> JobSpec:
    return JobSpec(flow="f", inputs={"a.x": [1]}, queue=queue)


async def claim_ids(store: Store, queue: str = "default") -> list[str]:
    return [j.id for j in (await store.claim(queue, "w1", limit=10, lease_s=30)).jobs]


async def test_a_paused_queue_hands_out_no_job_until_resumed(store: Store, clock: FakeClock) -> None:
    running = await store.submit(spec())
    assert await claim_ids(store) == [running]
    waiting = await store.submit(spec())
    other = await store.submit(spec("other"))
    assert await store.pause_queue("default") is True
    assert await store.pause_queue("default") is False  # (already paused)
    assert await store.paused_queues() == ["default"]
    clock.advance(1)
    assert await claim_ids(store) == []
    assert await claim_ids(store, "other") == [other]  # other queues go on
    later = await store.submit(spec())  # submits are queued
    job = await store.get(running)
    assert job is not None
    assert await store.complete("w1", [(running, job.token, {})]) == []  # running jobs go on
    waiter = asyncio.create_task(store.wait_for_jobs("default", 30))
    await asyncio.sleep(0)
    assert await store.resume_queue("default") is True
    async with asyncio.timeout(10):
        await waiter  # the resume woke an idle worker
    assert await store.resume_queue("default") is False
    assert await store.paused_queues() == []
    assert await claim_ids(store) == [waiting, later]
    changes = [(e.queue, e.kind) for e in await store.events() if e.job_id is None]
    assert changes == [("default", "queue_paused"), ("default", "queue_resumed")]


async def test_a_pause_holds_for_every_store_of_the_database(make_store: StoreFactory) -> None:
    first, second = await make_store(), await make_store()
    job_id = await first.submit(spec())
    await first.pause_queue("default")
    assert await second.paused_queues() == ["default"]
    assert await claim_ids(second) == []
    await second.resume_queue("default")
    assert await claim_ids(first) == [job_id]
