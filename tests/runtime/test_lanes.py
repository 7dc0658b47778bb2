"""``concurrency = N`` on an ``async`` routine: its calls run in up to N lanes that wait for
items between calls. Pauses, hooks attached while lanes wait, failures and the job's end
behave as they do for calls started one by one."""

from __future__ import annotations

import asyncio
from typing import Any

import weirflow as wf
from tests.conftest import assert_settled


class Wide(wf.Routine):
    """Four lanes; each call waits for ``gate`` (when set) and records its item."""

    inp = wf.Slot(capacity=100)
    concurrency = 4

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.started: list[Any] = []
        self.running = 0
        self.peak = 0
        self.four = asyncio.Event()
        self._counts: dict[int, asyncio.Event] = {}

    def started_n(self, n: int) -> asyncio.Event:
        """Set once ``n`` calls have started."""
        ev = self._counts.setdefault(n, asyncio.Event())
        if len(self.started) >= n:
            ev.set()
        return ev

    @inp.handler
    async def work(self, item: Any, ctx: wf.Context) -> None:
        self.started.append(item)
        ev = self._counts.get(len(self.started))
        if ev is not None:
            ev.set()
        self.running += 1
        self.peak = max(self.peak, self.running)
        if self.running == 4:
            self.four.set()
        try:
            if item == "fail":
                raise ValueError("bad item")
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.running -= 1


def _flow(wide: Wide) -> wf.Flow:
    return wf.Flow("lanes").add("w", wide)


async def test_a_paused_job_starts_no_call_in_waiting_lanes() -> None:
    wide = Wide()
    async with wf.Engine() as engine:
        job = await engine.start(_flow(wide), {"w.inp": list(range(8))}, keep_open=True)
        await asyncio.wait_for(wide.started_n(8).wait(), 10)
        await job.pause()  # the calls end; the four lanes wait for items
        for i in range(8, 12):
            await job.send("w.inp", i)  # (each wakes a waiting lane)
        for _ in range(20):  # give the woken lanes every chance to (wrongly) start a call
            await asyncio.sleep(0)
        assert wide.started == list(range(8))
        assert job.queue_stats("w.inp").size == 4
        await job.resume()
        await job.close_input()
        result = await job.wait(timeout_s=10)
    assert wide.started == list(range(12))
    assert_settled(result)


async def test_a_hook_attached_while_lanes_wait_sees_every_later_call() -> None:
    class Starts(wf.Hooks):
        def __init__(self) -> None:
            self.items: list[Any] = []

        async def on_handler_start(self, point: wf.HookPoint) -> None:
            self.items.append(point.item)

    wide = Wide()
    starts = Starts()
    async with wf.Engine() as engine:
        job = await engine.start(_flow(wide), {"w.inp": [0, 1]}, keep_open=True)
        await asyncio.wait_for(wide.started_n(2).wait(), 10)
        for _ in range(5):  # let both calls end: their lanes wait for items
            await asyncio.sleep(0)
        job.add_hooks(starts)
        for i in range(2, 10):
            await job.send("w.inp", i)
        await job.close_input()
        result = await job.wait(timeout_s=10)
    assert sorted(starts.items) == list(range(2, 10))
    assert_settled(result)


async def test_lanes_run_n_calls_at_once_and_the_end_dead_letters_what_they_hold() -> None:
    wide = Wide()
    wide.gate = asyncio.Event()  # never set: calls stay running until the job is cancelled
    async with wf.Engine() as engine:
        job = await engine.start(_flow(wide), {"w.inp": list(range(10))})
        await asyncio.wait_for(wide.four.wait(), 10)
        result = await job.cancel()
    assert wide.peak == 4
    assert result.dead_letter_count == 10
    assert sorted(d.item for d in result.dead_letters) == list(range(10))
    assert_settled(result)


async def test_a_failing_call_in_a_lane_goes_through_the_error_policy() -> None:
    class Retried(Wide):
        on_error = wf.ErrorPolicy(
            retries=2, backoff=wf.Backoff(initial_s=0.001, factor=1.0, max_s=0.001, jitter=False)
        )

    wide = Retried()
    async with wf.Engine() as engine:
        job = await engine.start(_flow(wide), {"w.inp": [1, "fail", 2, 3, 4, 5]})
        result = await job.wait(timeout_s=10)
    assert wide.started.count("fail") == 3  # the first attempt and two retries
    assert [(d.item, d.reason) for d in result.dead_letters] == [("fail", "handler_failed")]
    assert result.stats.routines["w"].retries == 2 and result.stats.routines["w"].failures == 3
    assert result.stats.routines["w"].calls == 6 + 2
    assert_settled(result)
