"""Whatever ends a job — cancel, a failure, a time limit — every input it accepted
is processed or dead-lettered with the reason, and the dead letters kept in memory
stay bounded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import weirflow as wf
from tests.conftest import assert_settled
from weirflow.runtime import LogJournal
from weirflow.runtime.dead_letters import DEFAULT_MAX_DEAD_LETTERS

MILLION = 1_000_000


class Record(wf.Routine):
    """Records each item; ``reached`` is set once ``after`` items were taken, and the
    handler then waits there forever (so the job ends mid-stream, by whatever ends it)."""

    inp = wf.Slot(capacity=10)
    out = wf.Event()
    after: int
    reached: asyncio.Event

    @inp.handler
    async def take(self, item: int, ctx: wf.Context) -> None:
        ctx.state.setdefault("seen", []).append(item)
        if len(ctx.state["seen"]) == self.after:
            self.reached.set()
            await asyncio.Event().wait()
        await ctx.emit(self.out, item)


class FailAt(wf.Routine):
    """Raises on item ``at``; the default policy (``fail_job``) fails the job."""

    inp = wf.Slot(capacity=10)
    at: int

    @inp.handler
    async def take(self, item: int, ctx: wf.Context) -> None:
        ctx.state["seen"] = ctx.state.get("seen", 0) + 1
        if item == self.at:
            raise ValueError(f"bad item {item}")


def _single(routine: wf.Routine) -> wf.Flow:
    flow = wf.Flow("end-accounting")
    flow.add("r", routine)
    return flow


def _identity(result: wf.JobResult, accepted: int) -> None:
    """The job-level identity beside the per-slot one, for a flow whose entry slot is
    fed by its inputs only."""
    assert_settled(result)
    stats = result.stats
    assert stats.balanced()
    assert stats.inputs.waiting == 0
    assert stats.accepted == accepted
    assert stats.accepted == stats.processed_at_entry + stats.dead_lettered_at_entry
    assert result.dead_letter_count == sum(s.dead_lettered for s in stats.slots.values()) + (
        stats.inputs.dead_lettered
    )
    assert len(result.dead_letters) == min(result.dead_letter_count, DEFAULT_MAX_DEAD_LETTERS)
    assert sum(result.dead_letter_reasons.values()) == result.dead_letter_count


async def test_a_million_inputs_cancelled_mid_stream_are_all_accounted_for() -> None:
    reached = asyncio.Event()
    async with wf.Engine() as engine:
        job = await engine.start(_single(Record(after=100, reached=reached)), {"r.inp": list(range(MILLION))})
        await reached.wait()
        result = await job.cancel()
        seen: list[int] = job.routine_state("r")["seen"]
    assert result.status is wf.JobStatus.CANCELLED
    _identity(result, MILLION)
    assert result.stats.slots["r.inp"].processed == 99  # the 100th was in flight
    assert result.dead_letter_count == MILLION - 99
    assert result.dead_letter_reasons == {"job_cancelled": MILLION - 99}
    assert result.dead_letters_truncated
    # what was processed and the letters kept are one unbroken prefix of the inputs, in order
    assert seen[:99] + [d.item for d in result.dead_letters] == list(range(99 + DEFAULT_MAX_DEAD_LETTERS))
    assert result.stats.inputs.dead_lettered == MILLION - 99 - 11  # not fed: all but 99 + 1 + 10


async def test_a_million_inputs_under_a_failing_handler_and_fail_job() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(_single(FailAt(at=500)), {"r.inp": list(range(MILLION))})
        result = await job.wait(timeout_s=60)
    assert result.status is wf.JobStatus.FAILED
    assert result.error is not None and "bad item 500" in result.error
    _identity(result, MILLION)
    assert result.stats.slots["r.inp"].processed == 500
    failed = [d for d in result.dead_letters if d.reason == "handler_failed"]
    assert [d.item for d in failed] == [500]
    assert result.dead_letter_reasons == {"handler_failed": 1, "job_failed": MILLION - 501}
    rest = [d for d in result.dead_letters if d.reason == "job_failed"]
    assert {d.error for d in rest} == {result.error}
    assert [d.item for d in rest] == list(range(501, 501 + DEFAULT_MAX_DEAD_LETTERS - 1))


async def test_a_failure_downstream_dead_letters_what_every_slot_and_input_held() -> None:
    """A chain: ``fail_job`` in the second routine; the first one's queue, its call in
    flight and the unfed inputs are dead-lettered with ``job_failed``."""
    reached = asyncio.Event()
    flow = wf.Flow("end-chain")
    flow.add("a", Record(after=10**9, reached=reached))
    flow.add("b", FailAt(at=300))
    flow.connect("a.out", "b.inp")
    async with wf.Engine() as engine:
        job = await engine.start(flow, {"a.inp": list(range(MILLION))})
        result = await job.wait(timeout_s=60)
    assert result.status is wf.JobStatus.FAILED
    assert_settled(result)
    stats = result.stats
    assert stats.balanced() and stats.accepted == MILLION
    assert stats.accepted == stats.processed_at_entry + stats.dead_lettered_at_entry
    b = stats.slots["b.inp"]
    assert b.processed == 300 and b.dead_lettered == b.enqueued - 300
    assert set(result.dead_letter_reasons) == {"handler_failed", "job_failed"}


async def test_a_timeout_dead_letters_with_reason_job_timeout() -> None:
    reached = asyncio.Event()
    results: list[wf.JobResult] = []

    class Keep(wf.Hooks):
        def on_job_result(self, job: wf.Job, result: wf.JobResult) -> None:
            results.append(result)

    async def main() -> None:
        async with wf.Engine(hooks=[Keep()]) as engine:
            job = await engine.start(_single(Record(after=5, reached=reached)), {"r.inp": list(range(1000))})
            with pytest.raises(wf.JobTimeoutError):
                await job.wait(timeout_s=0.05)
            await job.cancel(reason="job_timeout", error="timed out after 0.05s")

    await main()
    (result,) = results
    assert result.status is wf.JobStatus.CANCELLED
    assert result.error == "timed out after 0.05s"
    _identity(result, 1000)
    assert result.dead_letter_reasons == {"job_timeout": 1000 - 4}


def test_wf_run_timeout_dead_letters_as_job_timeout() -> None:
    results: list[wf.JobResult] = []

    class Keep(wf.Hooks):
        def on_job_result(self, job: wf.Job, result: wf.JobResult) -> None:
            results.append(result)

    class Hang(wf.Routine):
        inp = wf.Slot(capacity=2)

        @inp.handler
        async def take(self, item: int, ctx: wf.Context) -> None:
            await asyncio.Event().wait()

    with pytest.raises(wf.JobTimeoutError):
        wf.run(_single(Hang()), {"r.inp": list(range(100))}, timeout_s=0.05, hooks=[Keep()])
    (result,) = results
    _identity(result, 100)
    assert result.dead_letter_reasons == {"job_timeout": 100}


async def test_dead_letters_past_the_cap_still_reach_hooks_and_the_journal() -> None:
    letters: list[wf.DeadLetter] = []

    class Watch(wf.Hooks):
        def on_dead_letter(self, job: wf.Job, letter: wf.DeadLetter) -> None:
            letters.append(letter)

    journal = LogJournal()
    reached = asyncio.Event()
    async with wf.Engine(hooks=[Watch()], journal=journal, max_dead_letters=50) as engine:
        job = await engine.start(_single(Record(after=3, reached=reached)), {"r.inp": list(range(2000))})
        await reached.wait()
        result = await job.cancel()
    assert len(result.dead_letters) == 50
    assert result.dead_letter_count == 2000 - 2
    assert sorted(d.item for d in letters) == list(range(2, 2000))
    recorded = [r["item"] for r in journal.records if r["t"] == "dl"]
    assert sorted(recorded) == list(range(2, 2000))
    stats = result.stats
    assert stats.accepted == stats.processed_at_entry + stats.dead_lettered_at_entry


async def test_sends_waiting_for_room_are_dead_lettered_when_the_job_fails() -> None:
    """``send`` waits while the slot is full; the job fails meanwhile: each waiting
    item is a dead letter (reason ``job_failed``) and its ``send`` raises saying so."""
    gate = asyncio.Event()

    class Gate(wf.Routine):
        inp = wf.Slot(capacity=1)

        @inp.handler
        async def take(self, item: int, ctx: wf.Context) -> None:
            await gate.wait()
            raise ValueError("gate broke")

    async with wf.Engine() as engine:
        job = await engine.start(_single(Gate()), keep_open=True)
        await job.send("r.inp", 0)  # taken: in flight at the gate
        await job.send("r.inp", 1)  # queued
        senders = [asyncio.create_task(job.send("r.inp", i)) for i in (2, 3, 4)]
        await asyncio.sleep(0)  # one turn of the loop: each sender reaches the full slot
        assert job.queues()["r.inp"].blocked_emitters == 3
        gate.set()
        outcomes: list[Any] = await asyncio.gather(*senders, return_exceptions=True)
        result = await job.wait(timeout_s=10)
    assert all(isinstance(e, wf.JobError) and "dead-lettered" in str(e) for e in outcomes)
    assert result.status is wf.JobStatus.FAILED
    assert [(d.item, d.reason) for d in result.dead_letters] == [
        (0, "handler_failed"),
        (1, "job_failed"),
        (2, "job_failed"),
        (3, "job_failed"),
        (4, "job_failed"),
    ]
    _identity(result, 5)


async def test_a_send_timing_out_as_the_job_ends_is_a_dead_letter_not_a_refusal() -> None:
    """Found in review: the send's block timeout and the job's end fell in one loop turn; the
    caller got SlotFullError ("you have it back") while the item was also dead-lettered."""

    class Stuck(wf.Routine):
        x = wf.Slot(capacity=1)

        @x.handler
        async def h(self, item: object, ctx: wf.Context) -> None:
            await asyncio.Event().wait()

    flow = wf.Flow("stuck")
    flow.add("s", Stuck())
    async with wf.Engine() as engine:
        job = await engine.start(flow, {}, keep_open=True)
        await job.send("s.x", "first")  # in flight
        await job.send("s.x", "second")  # fills the slot
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, job._finish, wf.JobStatus.CANCELLED, None, "job_cancelled")
        # a loop busy past both deadlines, so that they are due in the same turn
        loop.call_later(0.01, time.sleep, 0.2)
        with pytest.raises(wf.JobFinishedError, match="was dead-lettered"):
            await job.send("s.x", "third", timeout_s=0.06)
        result = await job.wait(timeout_s=10)
    assert sorted(d.item for d in result.dead_letters) == ["first", "second", "third"]
    inputs = result.stats.inputs
    assert inputs.accepted == inputs.entered + inputs.waiting + inputs.dead_lettered
