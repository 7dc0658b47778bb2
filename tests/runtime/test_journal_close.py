"""A journal told of a job's end without an await (``Journal.job_finished_now``): the job
closes in the frame that ended it, and the journal hears the end last, as it heard
``job_finished``; a journal whose ``job_finished`` awaits is still awaited."""

from __future__ import annotations

import asyncio
from typing import Any

import weirflow as wf
from tests.runtime.flows import Boom
from weirflow.runtime import LogJournal, restore_from


class Forward(wf.Routine):
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def take(self, item: Any, ctx: wf.Context) -> None:
        ctx.state["last"] = item
        await ctx.emit(self.out, item)


def _chain() -> wf.Flow:
    f = wf.Flow("chain")
    f.add("a", Forward()).add("b", Forward())
    f.connect("a.out", "b.inp")
    f.output("b.out")
    return f


class Closing(LogJournal):
    """A ``LogJournal`` that notes when, and in which task, it heard the job's end."""

    def __init__(self) -> None:
        super().__init__()
        self.heard_at: int | None = None  # how many records it had then
        self.heard_in: asyncio.Task[Any] | None = None
        self.status: wf.JobStatus | None = None

    def job_finished_now(self, job: wf.Job, result: wf.JobResult) -> None:
        assert self.heard_at is None, "told twice"
        self.heard_at = len(self.records)
        self.heard_in = asyncio.current_task()
        self.status = result.status


class Awaiting(wf.Journal):
    """A journal whose ``job_finished`` awaits (the old form): it must still be awaited."""

    def __init__(self) -> None:
        self.heard = False

    def step_started(self, job: wf.Job, step: wf.Step) -> None:
        pass

    async def job_finished(self, job: wf.Job, result: wf.JobResult) -> None:
        await asyncio.sleep(0)
        self.heard = True


def _kinds(journal: LogJournal) -> list[str]:
    return [r["t"] for r in journal.records]


async def test_a_completed_job_closes_in_its_last_runner_and_the_journal_hears_the_end_last() -> None:
    journal = Closing()
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(_chain(), {"a.inp": [1, 2, 3]})
        result = await job.wait(timeout_s=10)
        # in the frame of the runner that went idle last: no close-out task
        assert journal.heard_in is not None
        assert journal.heard_in.get_name().startswith(f"weirflow:{job.id}:")
        await job.wait_closed()
    assert result.status is wf.JobStatus.COMPLETED and result.outputs["b.out"] == [1, 2, 3]
    assert journal.status is wf.JobStatus.COMPLETED
    kinds = _kinds(journal)
    assert journal.heard_at == len(kinds)  # nothing recorded after the end was heard
    assert kinds[-1] == "end" and kinds.index("end") > max(i for i, k in enumerate(kinds) if k == "done")
    # every prefix still replays (the end's records are the job's clean-up)
    full = restore_from(journal.records, _chain())
    assert full.outputs == {"b.out": [1, 2, 3]} and full.steps_done == 6


async def test_a_job_cancelled_while_nothing_runs_closes_in_the_cancelling_frame() -> None:
    journal = Closing()
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(_chain(), {}, keep_open=True)
        await job.pause()
        for n in range(3):
            await job.send("a.inp", n)
        result = await job.cancel()
        assert journal.heard_in is asyncio.current_task()
    assert result.status is wf.JobStatus.CANCELLED
    assert [d.item for d in result.dead_letters] == [0, 1, 2]
    kinds = _kinds(journal)
    assert journal.heard_at == len(kinds)
    end = kinds.index("end")
    assert kinds[end + 1 :] == ["dl", "dl", "dl"]  # the queued items, after the end, before it is heard


async def test_a_job_failed_by_a_running_call_still_records_its_end_before_that_step() -> None:
    journal = Closing()
    f = wf.Flow("boom").add("x", Boom())
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(f, {"x.inp": [7]})
        result = await job.wait(timeout_s=10)
        await job.wait_closed()
    assert result.status is wf.JobStatus.FAILED and result.error is not None and "no 7" in result.error
    kinds = _kinds(journal)
    assert journal.heard_at == len(kinds)
    # the end first, so that a resumed job runs the call again; its step and dead letter after
    assert kinds[kinds.index("start") :] == ["start", "end", "done", "dl"]
    assert restore_from(journal.records, f).queues == {"x.inp": [7]}


async def test_journals_await_one_that_awaits_and_tell_the_others_plainly() -> None:
    plain, awaiting = Closing(), Awaiting()
    async with wf.Engine(journal=wf.Journals(plain, awaiting)) as engine:
        job = await engine.start(_chain(), {"a.inp": [1]})
        result = await job.wait(timeout_s=10)
        assert awaiting.heard and plain.status is wf.JobStatus.COMPLETED  # both, before the result
        assert plain.heard_in is not None and not plain.heard_in.get_name().startswith("weirflow:")
    assert result.outputs["b.out"] == [1]
    both = Closing(), Closing()
    async with wf.Engine(journal=wf.Journals(*both)) as engine:
        job = await engine.start(_chain(), {"a.inp": [1]})
        await job.wait(timeout_s=10)
    for j in both:
        assert j.heard_in is not None and j.heard_in.get_name().startswith(f"weirflow:{job.id}:")
        assert j.heard_at == len(j.records)
