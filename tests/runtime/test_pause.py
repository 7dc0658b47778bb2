"""Pause and resume without loss, with producers still sending."""

from __future__ import annotations

import asyncio

import pytest

import weirflow as wf
from tests.conftest import assert_balanced, assert_settled
from tests.runtime.flows import Collect, Forward


def _stream_flow(capacity: int) -> wf.Flow:
    flow = wf.Flow("stream")
    flow.add("a", Forward())
    flow.add("b", Collect(slow=True))
    flow.connect("a.out", "b.inp")
    flow.slot("a.inp", capacity=capacity)
    flow.slot("b.inp", capacity=capacity)
    flow.output("b.seen")
    return flow


class FullWatch(wf.Hooks):
    """Signals when a slot becomes full."""

    def __init__(self) -> None:
        self.full: dict[str, asyncio.Event] = {}

    def event(self, slot: str) -> asyncio.Event:
        return self.full.setdefault(slot, asyncio.Event())

    def on_queue_state(self, job: wf.Job, slot: str, state: str) -> None:
        if state == "full":
            self.event(slot).set()


class CallCount(wf.Hooks):
    """Signals when a routine has finished ``n`` calls."""

    def __init__(self, routine: str, n: int) -> None:
        self.routine, self.n, self.calls = routine, n, 0
        self.reached = asyncio.Event()

    def on_handler_end(
        self, job: wf.Job, routine: str, item: object, error: BaseException | None, duration_s: float
    ) -> None:
        if routine == self.routine:
            self.calls += 1
            if self.calls >= self.n:
                self.reached.set()


async def test_pause_during_stream_loses_nothing_and_keeps_order() -> None:
    n = 5000
    watch = FullWatch()
    hundred = CallCount("b", 100)
    async with wf.Engine(hooks=[watch, hundred]) as engine:
        job = await engine.start(_stream_flow(16), keep_open=True)
        a_full = watch.event("a.inp")

        async def produce() -> None:
            for i in range(n):
                await job.send("a.inp", i, timeout_s=30)

        producer = asyncio.create_task(produce())
        # let part of the stream through, then pause mid-stream
        await asyncio.wait_for(hundred.reached.wait(), 10)
        point = await job.pause(reason="inspect")
        assert job.status is wf.JobStatus.PAUSED
        assert point.reason == "inspect"
        assert set(point.queues) == {"a.inp", "b.inp"}
        assert_balanced(point.queues)
        processed_at_pause = job.queues()["b.inp"].processed

        # the producer keeps sending until the input slot is full, then waits
        await asyncio.wait_for(a_full.wait(), 10)
        assert not producer.done()
        snap = job.queues()
        assert snap["a.inp"].size == 16 and snap["a.inp"].blocked_emitters == 1
        assert snap["a.inp"].state == "full" and snap["a.inp"].paused
        assert snap["b.inp"].processed == processed_at_pause  # nothing ran while paused
        assert_balanced(snap)

        report = await job.resume()
        assert job.status is wf.JobStatus.RUNNING
        assert any("a.inp" in w and "full" in w for w in report.warnings), report.warnings
        await producer
        await job.close_input()
        result = await job.wait(timeout_s=30)
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs["b.seen"] == [list(range(n))]
    assert result.dead_letters == []
    assert_settled(result)


async def test_paused_job_never_completes_until_resumed() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(_stream_flow(1000), {"a.inp": list(range(50))})
        point = await job.pause()
        assert point.reason == "manual"
        with pytest.raises(wf.JobTimeoutError):
            await job.wait(timeout_s=0.2)
        assert job.status is wf.JobStatus.PAUSED
        assert all(s.paused for s in job.queues().values())
        await job.resume()
        result = await job.wait(timeout_s=10)
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs["b.seen"] == [list(range(50))]


async def test_pause_waits_for_running_calls() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    class Slow(wf.Routine):
        inp = wf.Slot()
        out = wf.Event()

        @inp.handler
        async def work(self, item: int, ctx: wf.Context) -> None:
            started.set()
            await release.wait()
            await ctx.emit(self.out, item)

    flow = wf.Flow("slow")
    flow.add("s", Slow())
    flow.output("s.out")
    async with wf.Engine() as engine:
        job = await engine.start(flow, {"s.inp": [1, 2]})
        await started.wait()
        pausing = asyncio.create_task(job.pause())
        await asyncio.sleep(0)
        assert not pausing.done()  # the running call is not at a safe point yet
        release.set()
        point = await pausing
        assert point.queues["s.inp"].size == 1
        assert point.queues["s.inp"].processed == 1
        await job.resume()
        result = await job.wait(timeout_s=10)
    assert result.outputs["s.out"] == [1, 2]


async def test_resume_when_not_paused_is_an_error() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(_stream_flow(10), keep_open=True)
        with pytest.raises(wf.JobError, match="not paused"):
            await job.resume()
        await job.cancel()
