"""Two workers on one ``Engine`` (one per queue): whichever stops first, the other's jobs
keep their durable journal and step rows, and the engine's own journal comes back when the
last one stops (review s19 G: the first to stop put back the journal it had found)."""

from __future__ import annotations

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.durable.worker import Worker
from weirflow.runtime.replay import LogJournal

from . import flows
from .conftest import StoreFactory
from .helpers import job_is, until


@pytest.mark.parametrize("first", ["q1", "q2"])
async def test_one_of_two_workers_on_an_engine_stops_the_other_stays_durable(
    make_store: StoreFactory, first: str
) -> None:
    store = await make_store()
    engine = wf.Engine()
    engine.register(flows.steps3)
    log = LogJournal()
    engine.journal = log
    workers = {q: Worker(store, engine, queue=q, worker_id=f"w-{q}", poll_max_s=0.2) for q in ("q1", "q2")}
    second = "q2" if first == "q1" else "q1"
    async with workers[second] as staying:
        async with workers[first]:
            pass  # its queue is done, say: it stops while the other goes on
        # b fails: the job's journal and step rows stay in the store for a retry
        spec = JobSpec(flow="steps3", inputs={"a.item": [{"fail": "b"}]}, queue=second, max_attempts=1)
        job_id = await store.submit(spec)
        await until(lambda: _finished(store, job_id), staying)
        assert await store.read_journal(job_id) != [], "the job ran without its durable journal"
        steps = [(s.routine, s.status) for s in await store.steps(job_id)]
        assert steps == [("a", "completed"), ("b", "failed")], "the job ran without its step rows"
    assert engine.journal is log  # the last worker gone, the engine's own journal is back
    assert "done" in [r["t"] for r in log.records]  # and it heard every record meanwhile


async def _finished(store: Store, job_id: str) -> bool:
    return await job_is(store, job_id, "failed")
