"""The durable journal needs no await at a job's end (``job_finished_now``): a durable job
closes in the frame that ended it, and what the store holds is what it held before —
nothing of a completed job, every record of a failed one in causal order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import weirflow as wf
from tests.runtime.flows import Boom, Double
from weirflow.durable import JobSpec, Store
from weirflow.durable.journal import DurableJournal
from weirflow.runtime import LogJournal, restore_from


class Noting(DurableJournal):
    """Notes the task it heard a job's end in."""

    heard_in: asyncio.Task[Any] | None = None

    def job_finished_now(self, job: wf.Job, result: wf.JobResult) -> None:
        self.heard_in = asyncio.current_task()
        super().job_finished_now(job, result)


def _flow(routine: wf.Routine, name: str) -> wf.Flow:
    f = wf.Flow(name)
    f.add("d", routine)
    if "out" in routine.events:
        f.output("d.out")
    return f


async def test_a_completed_durable_job_closes_in_its_runner_and_leaves_no_journal(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="double", inputs={"d.inp": [1, 2]}))
    durable = Noting(store, max_delay_s=60)  # nothing is flushed by time
    async with wf.Engine(journal=wf.Journals(durable, LogJournal())) as engine:
        job = await engine.start(_flow(Double(), "double"), {"d.inp": [1, 2]}, job_id=job_id)
        result = await job.wait(timeout_s=10)
        assert durable.heard_in is not None and durable.heard_in.get_name() == f"weirflow:{job_id}:d"
        await durable.flush()
        assert await durable.records_of(job_id) == []  # its outcome says it all
    assert result.outputs["d.out"] == [2, 4]
    assert durable.committed == 0 and durable.dropped > 0


async def test_a_failed_durable_job_commits_its_records_in_their_order(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="boom", inputs={"d.inp": [7]}))
    durable, log = Noting(store, max_delay_s=60), LogJournal()
    flow = _flow(Boom(), "boom")
    async with wf.Engine(journal=wf.Journals(durable, log)) as engine:
        job = await engine.start(flow, {"d.inp": [7]}, job_id=job_id)
        result = await job.wait(timeout_s=10)
        await durable.flush()
        stored = await durable.records_of(job_id)
    assert result.status is wf.JobStatus.FAILED
    # the end before the failed step (a resumed job runs the call again), its dead letter after
    assert [r["t"] for r in stored] == ["enq", "start", "end", "done", "dl"]
    assert stored == json.loads(json.dumps(log.records))
    assert restore_from(stored, flow).queues == {"d.inp": [7]}
