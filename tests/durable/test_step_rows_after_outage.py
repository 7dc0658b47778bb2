"""The step rows of a run lost here must not make the next run of the same job, begun by the
same worker, count as lost.

``StepJournal.flush`` used to put the rows it took back into its buffer when the store call fails
(an outage), even when the job was forgotten during that call (its lease was lost). The
earlier run's rows then wait in the buffer next to the rows of the next run of the job
(claimed again by this worker once the store is back); the store wrote the new run's rows
and refused the job for the old run's, and the refusal was taken as the loss of the run
begun since: it was forgotten and ``on_lost`` stopped it, though it held the job. Now a
failed flush puts back only the rows of jobs not forgotten since it took them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, open_store
from weirflow.durable.steps import StepJournal
from weirflow.errors import StoreError
from weirflow.runtime.job import Job
from weirflow.runtime.journal import Step

from ..redisserver import RedisServer, started_server


class _Noop(wf.Routine):
    item = wf.Slot()

    @item.handler
    async def run(self, item: int, ctx: wf.Context) -> None:
        pass


@pytest.fixture
def server() -> Iterator[RedisServer]:
    s = started_server(appendonly=True, appendfsync="always")
    yield s
    s.destroy()


async def test_an_old_runs_rows_put_back_after_an_outage_keep_the_next_run(server: RedisServer) -> None:
    store = open_store(server.url(1))
    await store.open()
    engine = wf.Engine()
    flow = wf.Flow("rows_after_outage")
    flow.add("a", _Noop())
    lost: list[str] = []
    try:
        job_id = await store.submit(JobSpec(flow="rows_after_outage", inputs={"a.item": [1]}, max_attempts=5))
        [r1] = (await store.claim("default", "W", limit=1, lease_s=60)).jobs
        job = Job(engine, flow, job_id=job_id)
        rows = StepJournal(store, worker_id="W", flush_s=3600.0, on_lost=lost.append)
        rows.begin(job_id, r1.runs)
        rows.step_started(job, Step("a", 1, 1, [("item", 1)]))
        # the store hangs: a flush takes run 1's row and waits on it
        server.pause()
        flushing = asyncio.get_running_loop().create_task(rows.flush())
        await asyncio.sleep(0)  # the flush task runs up to its first await, the store's call:
        assert not rows._rows  # it has taken run 1's row by then
        rows.forget(job_id)  # meanwhile run 1 is lost here (its lease ran out, say)
        server.kill()
        with pytest.raises(StoreError):
            async with asyncio.timeout(60):
                await flushing
        server.start()
        # the job is run again (here: cancelled, retried, claimed by the same worker)
        await store.cancel(job_id)
        await store.retry(job_id)
        [r2] = (await store.claim("default", "W", limit=1, lease_s=60)).jobs
        assert r2.id == job_id and r2.runs > r1.runs
        rows.begin(job_id, r2.runs)
        rows.step_started(job, Step("a", 1, 1, [("item", 1)]))
        await rows.flush()
        # run 2 holds the job: nothing of it may be lost
        assert lost == [], "the run begun since was taken as lost for the earlier run's row"
        steps = await store.steps(job_id)
        assert [(s.routine, s.run) for s in steps if s.run == r2.runs] == [("a", r2.runs)]
    finally:
        await engine.close()
        await store.close()
