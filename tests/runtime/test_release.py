"""A forgotten job lets go of its parts: nothing of it is left for the cyclic GC, and what a
user reads of it afterwards (result, status, dead letters, final stats and queues) is the
same as before."""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from typing import Any

import pytest

import weirflow as wf
from tests.runtime.flows import Collect, Forward, SyncForward


class Flaky(wf.Routine):
    """Dead-letters odd items (``on_error`` default: no retries, dead letter)."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def check(self, item: int, ctx: wf.Context) -> None:
        if item % 2:
            raise ValueError(f"odd {item}")
        await ctx.emit(self.out, item)


class SyncFlaky(wf.Routine):
    """``Flaky`` with a plain ``def`` handler (it runs on a worker thread)."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    def check(self, item: int, ctx: wf.Context) -> None:
        if item % 2:
            raise ValueError(f"odd {item}")
        ctx.emit(self.out, item)


class Stuck(wf.Routine):
    inp = wf.Slot()

    @inp.handler
    async def wait(self, item: int, ctx: wf.Context) -> None:
        await asyncio.Event().wait()


def _chain(name: str, *routines: wf.Routine) -> wf.Flow:
    flow = wf.Flow(name)
    names = [f"r{i}" for i in range(len(routines))]
    for n, r in zip(names, routines, strict=True):
        flow.add(n, r)
    for a, b in itertools.pairwise(names):
        flow.connect(f"{a}.out", f"{b}.inp")
    return flow


FLOWS = {
    "async chain": lambda: _chain("a", Forward(), Forward(), Collect()),
    "def chain (worker threads)": lambda: _chain("d", SyncForward(), SyncForward(), Collect()),
    "dead letters": lambda: _chain("f", Flaky(), Collect()),
    "dead letters, def (worker threads)": lambda: _chain("s", SyncFlaky(), Collect()),
    "cancelled": lambda: _chain("c", Forward(), Stuck()),
}


@pytest.mark.parametrize("kind", list(FLOWS))
async def test_a_forgotten_job_is_freed_without_the_cyclic_gc(kind: str, no_cyclic_gc: None) -> None:
    async with wf.Engine() as engine:
        flow = FLOWS[kind]()
        job = await engine.start(flow, {"r0.inp": list(range(20))})
        if kind == "cancelled":
            await job.cancel()
        else:
            await job.wait(timeout_s=10)
        await job.wait_closed()
        freed = threading.Event()
        weakref.finalize(job, freed.set)
        engine.forget(job.id)
        del job
        # with the cyclic GC off, only reference counting can free it: once the loop has
        # run the job's last callbacks and worker threads have let go (they were told to
        # stop when the job ended)
        assert await asyncio.to_thread(freed.wait, 10)


async def test_what_a_forgotten_job_answers_is_what_it_answered_before() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(_chain("f", Flaky(), Collect()), {"r0.inp": list(range(10))})
        result = await job.wait(timeout_s=10)
        await job.wait_closed()
        before: dict[str, Any] = {
            "status": job.status,
            "error": job.error,
            "queues": job.queues(),
            "dicts": job.queue_dicts(),
            "stats": job.stats,
            "dead_letters": list(job.dead_letters),
            "count": job.dead_letter_count,
            "input_closed": job.input_closed,
        }
        engine.forget(job.id)
        assert job.released
        assert job.result is result and job.status is before["status"] and job.error == before["error"]
        assert job.queues() == before["queues"] and job.queue_dicts() == before["dicts"]
        assert all(s.balanced() for s in job.queues().values())
        stats = job.stats
        assert stats.slots == before["stats"].slots and stats.routines == before["stats"].routines
        assert job.dead_letters == before["dead_letters"] and job.dead_letter_count == before["count"] > 0
        assert job.input_closed == before["input_closed"]
        await job.wait_closed()  # returns at once
        assert await job.wait() is result
        with pytest.raises(wf.JobError):  # the routines are gone, and say so with a typed error
            job.routine_state("r0")


async def test_jobs_without_hooks_of_their_own_see_hooks_added_to_the_engine_later() -> None:
    class Seen(wf.Hooks):
        def __init__(self) -> None:
            self.jobs: list[str] = []

        def on_job_status(self, job: Any, status: wf.JobStatus, reason: str | None) -> None:
            if status is wf.JobStatus.COMPLETED:
                self.jobs.append(job.id)

    async with wf.Engine() as engine:
        flow = _chain("a", Forward(), Collect())
        first = await engine.start(flow, {"r0.inp": [1]})
        await first.wait(timeout_s=10)
        seen = Seen()
        engine.hooks.append(seen)
        second = await engine.start(flow, {"r0.inp": [1]})
        await second.wait(timeout_s=10)
        assert seen.jobs == [second.id]
        engine.hooks.remove(seen)
        third = await engine.start(flow, {"r0.inp": [1]})
        await third.wait(timeout_s=10)
        assert seen.jobs == [second.id]


async def test_a_handler_still_running_when_its_job_is_forgotten_is_refused_as_finished() -> None:
    """A plain ``def`` call cannot be cancelled: one that goes on after its job was cancelled
    and forgotten gets ``JobFinishedError`` from ``ctx.emit``, as before the release."""
    go, done = threading.Event(), threading.Event()
    raised: list[BaseException] = []

    class Late(wf.Routine):
        inp = wf.Slot()
        out = wf.Event()

        @inp.handler
        def late(self, item: int, ctx: wf.Context) -> None:
            started.set()
            go.wait(10)
            try:
                ctx.emit(self.out, item)
            except Exception as e:  # noqa: BLE001 - the test records what it raised
                raised.append(e)
            finally:
                done.set()

    started = threading.Event()
    async with wf.Engine() as engine:
        job = await engine.start(_chain("late", Late(), Collect()), {"r0.inp": [1]})
        assert await asyncio.to_thread(started.wait, 10)
        await job.cancel()
        engine.forget(job.id)
        assert job.released
        go.set()
        assert await asyncio.to_thread(done.wait, 10)
    assert [type(e) for e in raised] == [wf.JobFinishedError]


async def test_a_send_to_a_forgotten_job_is_refused_as_finished() -> None:
    """``send`` after ``forget`` says the job has finished, as it did before the release (not
    ``UnknownSlotError`` "(slots: )": the released job has no slots left to look up)."""
    async with wf.Engine() as engine:
        job = await engine.start(_chain("r", Forward(), Collect()), {"r0.inp": [1]})
        await job.wait(timeout_s=10)
        with pytest.raises(wf.JobFinishedError):
            await job.send("r0.inp", 2)
        engine.forget(job.id)
        assert job.released
        with pytest.raises(wf.JobFinishedError, match=r"send to r0\.inp"):
            await job.send("r0.inp", 2)


async def test_the_state_of_a_forgotten_job_is_refused_as_finished() -> None:
    """``routine_state`` after ``forget``: the job has finished (not "no routine"), and a
    routine the flow lacks is still ``UnknownSlotError``."""
    async with wf.Engine() as engine:
        job = await engine.start(_chain("r", Forward(), Collect()), {"r0.inp": [1]})
        await job.wait(timeout_s=10)
        assert job.routine_state("r1") is not None
        engine.forget(job.id)
        assert job.released
        with pytest.raises(wf.JobFinishedError, match="released"):
            job.routine_state("r1")
        with pytest.raises(wf.UnknownSlotError):
            job.routine_state("nope")
