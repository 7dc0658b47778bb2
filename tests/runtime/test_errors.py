"""Retries with backoff, give-up, dead-letter, fail-job and cancel."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

import weirflow as wf
from tests.conftest import assert_settled
from tests.runtime.flows import Collect

FAST = wf.Backoff(initial_s=0.001, factor=2.0, max_s=0.01, jitter=False)


def _single(routine: wf.Routine, capacity: int = 1000) -> wf.Flow:
    flow = wf.Flow("single")
    flow.add("r", routine)
    flow.slot("r.inp", capacity=capacity)
    if "out" in routine.events:
        flow.output("r.out")
    return flow


class Flaky(wf.Routine):
    """Fails ``fails`` times per item (counting in ctx.state), then emits the item."""

    inp = wf.Slot()
    out = wf.Event()
    on_error = wf.ErrorPolicy(retries=3, backoff=FAST, give_up_on=(ValueError,), then="dead_letter")

    @inp.handler
    async def work(self, item: Any, ctx: wf.Context) -> None:
        ctx.state.setdefault("attempts", []).append((item, ctx.attempt))
        if item == "bad-value":
            raise ValueError("not retryable")
        tries = ctx.state.setdefault("tries", {})
        tries[item] = tries.get(item, 0) + 1
        if tries[item] <= self.fails:  # type: ignore[attr-defined]
            raise ConnectionError(f"flaky {item} #{tries[item]}")
        await ctx.emit(self.out, item)


async def test_retries_rerun_the_handler_with_attempt_counting() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(_single(Flaky(fails=2)), {"r.inp": ["x", "y"]})
        result = await job.wait(timeout_s=10)
        attempts = job.routine_state("r")["attempts"]
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs["r.out"] == ["x", "y"]
    assert attempts == [("x", 1), ("x", 2), ("x", 3), ("y", 1), ("y", 2), ("y", 3)]
    r = result.stats.routines["r"]
    assert (r.calls, r.failures, r.retries) == (6, 4, 4)
    assert result.dead_letters == []
    assert_settled(result)


async def test_backoff_delays_are_observed() -> None:
    stamps: list[float] = []

    class Timed(wf.Routine):
        inp = wf.Slot()
        on_error = wf.ErrorPolicy(
            retries=3, backoff=wf.Backoff(initial_s=0.02, factor=2.0, max_s=1, jitter=False)
        )

        @inp.handler
        async def work(self, item: int, ctx: wf.Context) -> None:
            stamps.append(asyncio.get_running_loop().time())
            if ctx.attempt < 4:
                raise ConnectionError("again")

    result = await _run(_single(Timed()), {"r.inp": [1]})
    assert result.status is wf.JobStatus.COMPLETED
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(gaps) == 3
    for gap, expected in zip(gaps, (0.02, 0.04, 0.08), strict=True):
        assert gap >= expected * 0.95, gaps


async def test_retries_exhausted_dead_letters_and_continues() -> None:
    result = await _run(_single(Flaky(fails=10)), {"r.inp": ["x", "y"]})
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs["r.out"] == []
    assert [(d.item, d.reason) for d in result.dead_letters] == [
        ("x", "handler_failed"),
        ("y", "handler_failed"),
    ]
    assert result.dead_letters[0].error == "ConnectionError: flaky x #4"
    assert result.stats.routines["r"].calls == 8
    assert_settled(result)


async def test_give_up_on_skips_retries() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(_single(Flaky(fails=0)), {"r.inp": ["bad-value", "ok"]})
        result = await job.wait(timeout_s=10)
        attempts = job.routine_state("r")["attempts"]
    assert attempts == [("bad-value", 1), ("ok", 1)]
    assert result.outputs["r.out"] == ["ok"]
    (letter,) = result.dead_letters
    assert letter.item == "bad-value" and letter.error == "ValueError: not retryable"
    assert_settled(result)


async def test_retry_exception_requests_another_attempt() -> None:
    class Polite(wf.Routine):
        inp = wf.Slot()
        out = wf.Event()
        on_error = wf.ErrorPolicy(retries=2)

        @inp.handler
        async def work(self, item: int, ctx: wf.Context) -> None:
            if ctx.attempt == 1:
                raise wf.Retry(delay_s=0.001)
            await ctx.emit(self.out, (item, ctx.attempt))

    result = await _run(_single(Polite()), {"r.inp": [7]})
    assert result.outputs["r.out"] == [(7, 2)]
    assert result.stats.routines["r"].retries == 1


async def test_fail_job_fails_with_error_text_and_dead_letters_queued_items() -> None:
    class Boom(wf.Routine):
        inp = wf.Slot()

        @inp.handler
        async def work(self, item: int, ctx: wf.Context) -> None:
            if item == 3:
                raise RuntimeError("boom at 3")

    result = await _run(_single(Boom()), {"r.inp": list(range(10))})
    assert result.status is wf.JobStatus.FAILED
    assert result.error == "routine 'r' failed: RuntimeError: boom at 3"
    reasons = {d.item: d.reason for d in result.dead_letters}
    assert reasons[3] == "handler_failed"
    assert all(reasons[i] == "job_failed" for i in range(4, 10))
    assert result.stats.slots["r.inp"].processed == 3
    assert_settled(result)


async def test_sync_handler_failure_goes_through_the_policy() -> None:
    class SyncBoom(wf.Routine):
        inp = wf.Slot()
        on_error = wf.ErrorPolicy(retries=1, backoff=FAST, then="dead_letter")

        @inp.handler
        def work(self, item: int, ctx: wf.Context) -> None:
            raise KeyError(item)

    result = await _run(_single(SyncBoom()), {"r.inp": [1, 2]})
    assert result.status is wf.JobStatus.COMPLETED
    assert [d.item for d in result.dead_letters] == [1, 2]
    assert result.stats.routines["r"].calls == 4


async def test_cancel_dead_letters_queued_and_in_flight_items() -> None:
    started = asyncio.Event()

    class Hang(wf.Routine):
        inp = wf.Slot()

        @inp.handler
        async def work(self, item: int, ctx: wf.Context) -> None:
            started.set()
            await asyncio.Event().wait()

    async with wf.Engine() as engine:
        job = await engine.start(_single(Hang()), {"r.inp": list(range(5))})
        await started.wait()
        result = await job.cancel()
    assert result.status is wf.JobStatus.CANCELLED
    assert sorted(d.item for d in result.dead_letters) == list(range(5))
    assert {d.reason for d in result.dead_letters} == {"job_cancelled"}
    assert_settled(result)
    with pytest.raises(wf.JobError, match="cancelled"):
        await job.send("r.inp", 9)


async def test_cancel_releases_blocked_senders_with_an_error() -> None:
    flow = wf.Flow("blocked")
    flow.add("c", Collect())
    flow.slot("c.inp", capacity=1)
    async with wf.Engine() as engine:
        job = await engine.start(flow, keep_open=True)
        job.pause_routine("c")
        await job.send("c.inp", 1)
        sender = asyncio.create_task(job.send("c.inp", 2))
        await asyncio.sleep(0)
        assert job.queues()["c.inp"].blocked_emitters == 1
        result = await job.cancel()
        with pytest.raises(wf.JobError, match="dead-lettered"):
            await sender
    # the queued item, then the one that was waiting in send: both were accepted
    assert [(d.item, d.reason) for d in result.dead_letters] == [(1, "job_cancelled"), (2, "job_cancelled")]
    assert (result.stats.inputs.accepted, result.stats.inputs.dead_lettered) == (2, 1)
    assert_settled(result)


async def test_cancel_ends_the_task_of_a_paused_routine() -> None:
    """A routine paused (``pause_routine``) with an item waiting for it: its runner waits
    for the routine's resume. Cancelling the job ends that task too (it held nothing, so
    the job may close out at once: the task must not be left waiting for the life of the
    loop, holding the job)."""
    flow = wf.Flow("paused")
    flow.add("c", Collect())
    async with wf.Engine() as engine:
        job = await engine.start(flow, keep_open=True)
        [task] = [t for t in asyncio.all_tasks() if t.get_name() == f"weirflow:{job.id}:c"]
        job.pause_routine("c")
        await job.send("c.inp", 1)
        await asyncio.sleep(0)  # (a yield: the woken runner runs to its wait for the resume)
        assert job.runner("c").waiter is None  # not parked: waiting for the resume
        result = await job.cancel()
        assert [(d.item, d.reason) for d in result.dead_letters] == [(1, "job_cancelled")]
        await asyncio.wait({task}, timeout=5)
        assert task.done(), task
    assert_settled(result)


async def _run(flow: wf.Flow, inputs: dict[str, Any]) -> wf.JobResult:
    async with wf.Engine() as engine:
        job = await engine.start(flow, inputs)
        return await job.wait(timeout_s=10)
