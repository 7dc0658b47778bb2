"""Resuming from any prefix of a job's journal: nothing lost, completed steps not rerun.

A crash leaves the store with a prefix of the journal's records. Resuming from
*every* prefix must give the uninterrupted run's outputs exactly, and the
interrupted step runs again with ``ctx.attempt`` one higher; what it had emitted
before the crash (even when a downstream step already took it) is not delivered
again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import weirflow as wf
from tests.conftest import assert_settled
from weirflow.runtime import LogJournal, restore_from


class Hop(wf.Routine):
    """Counts ``[id, n]`` down: one emission per step, to ``out`` while n > 0, else ``done``."""

    inp = wf.Slot(capacity=64)  # in a cycle: room for every item, so blocking cannot deadlock
    out = wf.Event()
    done = wf.Event()

    @inp.handler
    async def hop(self, item: list[int], ctx: wf.Context) -> None:
        ident, n = item
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        if n % 2:
            await asyncio.sleep(0)  # let other routines interleave their records
        if n > 0:
            await ctx.emit(self.out, [ident, n - 1])
        else:
            await ctx.emit(self.done, ident)


class Gather(wf.Routine):
    inp = wf.Slot(capacity=2)
    got = wf.Event()

    @inp.handler
    async def take(self, n: int, ctx: wf.Context) -> None:
        ctx.state.setdefault("seen", []).append(n)

    async def on_end(self, ctx: wf.Context) -> None:
        await ctx.emit(self.got, sorted(ctx.state.get("seen", [])))


def chain() -> wf.Flow:
    f = wf.Flow("chain")
    f.add("a", Hop()).add("b", Hop()).add("sink", Gather())
    f.connect("a.out", "b.inp").connect("b.out", "a.inp")
    f.connect("a.done", "sink.inp").connect("b.done", "sink.inp")
    f.output("sink.got")
    return f


INPUTS = {"a.inp": [[i, n] for i, n in enumerate([5, 3, 4, 1, 0, 2])]}


async def run(flow: wf.Flow, records: list[dict[str, Any]] | None) -> tuple[wf.JobResult, LogJournal]:
    journal = LogJournal()
    async with wf.Engine(journal=journal) as engine:
        restore = restore_from(records, flow) if records is not None else None
        job = await engine.start(flow, INPUTS, restore=restore)
        return await job.wait(timeout_s=20), journal


async def test_resuming_from_every_prefix_gives_the_same_outputs() -> None:
    flow = chain()
    reference, journal = await run(flow, None)
    assert reference.status is wf.JobStatus.COMPLETED
    records = journal.records
    expected = reference.outputs["sink.got"]
    assert expected[0]  # something reached the sink
    interrupted = 0
    for cut in range(len(records) + 1):
        prefix = records[:cut]
        restored = restore_from(prefix, flow)
        result, resumed = await run(flow, prefix)
        assert result.status is wf.JobStatus.COMPLETED, (cut, result.error)
        assert result.outputs["sink.got"] == expected, cut
        assert_settled(result)
        # the calls the crash interrupted run again, one attempt higher
        reruns = [r for r in resumed.records if r["t"] == "start" and r["attempt"] > 1]
        rerun_calls = sum(len(a) for a in restored.rerun_attempts.values()) + len(restored.end_reruns)
        assert len(reruns) == rerun_calls, cut
        interrupted += bool(reruns)
        # completed steps are not run again: their sequence numbers are not reused
        done_before = {(r["routine"], r["seq"]) for r in prefix if r["t"] == "done"}
        started_after = {(r["routine"], r["seq"]) for r in resumed.records if r["t"] == "start"}
        assert not done_before & started_after, cut
    assert interrupted > 0  # some cuts did fall inside a step


async def test_resume_feeds_only_inputs_not_yet_fed() -> None:
    flow = chain()
    _, journal = await run(flow, None)
    first_enq = next(i for i, r in enumerate(journal.records) if r["t"] == "enq")
    restored = restore_from(journal.records[: first_enq + 1], flow)
    assert restored.fed == {"a.inp": 1}
    assert restored.queues == {"a.inp": [[0, 5]]}


def test_replay_of_a_finished_on_end_marks_the_routine_ended() -> None:
    flow = chain()
    _, journal = asyncio.run(run(flow, None))
    restored = restore_from(journal.records, flow)
    assert "sink" in restored.ended
    assert restored.outputs["sink.got"]
    assert restored.queues == {}


@pytest.mark.parametrize("cut", [0.25, 0.5, 0.75])
async def test_state_comes_from_the_last_finished_step(cut: float) -> None:
    flow = chain()
    _, journal = await run(flow, None)
    prefix = journal.records[: int(len(journal.records) * cut)]
    restored = restore_from(prefix, flow)
    for routine in ("a", "b"):
        dones = [r for r in prefix if r["t"] == "done" and r["routine"] == routine]
        if dones:
            assert restored.states[routine] == dones[-1]["state"]


class Branchy(wf.Routine):
    """Sends each countdown to one of two events."""

    inp = wf.Slot(capacity=64)  # in a cycle with Fan: room for every item, no deadlock
    left = wf.Event()
    right = wf.Event()

    @inp.handler
    async def split(self, n: int, ctx: wf.Context) -> None:
        if n > 0:
            await ctx.emit(self.left if n % 2 else self.right, n - 1)


class Fan(wf.Routine):
    """Emits each item to an event with two targets: a step's emission can be taken by
    one target before the step ends."""

    inp = wf.Slot(capacity=1)
    out = wf.Event()

    @inp.handler
    async def fan(self, n: int, ctx: wf.Context) -> None:
        await ctx.emit(self.out, n)


@pytest.mark.parametrize("inputs", [[3, 1], [4, 4, 0], [2, 5, 1, 3]])
async def test_every_prefix_of_a_fan_out_flow_gives_the_same_outputs(inputs: list[int]) -> None:
    flow = wf.Flow("fan")
    flow.add("s", Branchy()).add("f", Fan()).add("sink", Gather()).add("tap", Gather())
    flow.connect("s.left", "f.inp").connect("s.right", "sink.inp")
    flow.connect("f.out", "s.inp").connect("f.out", "tap.inp")
    flow.output("sink.got").output("tap.got")

    async def go(records: list[dict[str, Any]] | None) -> wf.JobResult:
        async with wf.Engine(journal=LogJournal()) as engine:
            restore = restore_from(records, flow) if records is not None else None
            job = await engine.start(flow, {"s.inp": inputs}, restore=restore)
            return await job.wait(timeout_s=20)

    journal = LogJournal()
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(flow, {"s.inp": inputs})
        reference = await job.wait(timeout_s=20)
    for cut in range(len(journal.records) + 1):
        result = await go(journal.records[:cut])
        assert result.status is wf.JobStatus.COMPLETED
        assert_settled(result)
        for out, (expected,) in reference.outputs.items():
            (got,) = result.outputs[out]
            assert sorted(got) == sorted(expected), (cut, out)


async def test_resuming_twice_continues_the_same_journal() -> None:
    flow = chain()
    reference, journal = await run(flow, None)
    first = journal.records
    for cut1 in range(3, len(first), 4):
        prefix = first[:cut1]
        _, second = await run(flow, prefix)
        for cut2 in range(0, len(second.records), 3):
            combined = prefix + second.records[:cut2]
            result, _ = await run(flow, combined)
            assert result.outputs == reference.outputs, (cut1, cut2)
            assert_settled(result)


class FailsOnce(wf.Routine):
    """Fails the job the first time it sees 2 (no retries); fine on a later attempt."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def work(self, n: int, ctx: wf.Context) -> None:
        if n == 2 and ctx.attempt == 1:
            raise RuntimeError("flaky")
        await ctx.emit(self.out, n * 10)


async def test_a_failed_job_resumes_from_its_last_step_and_reruns_the_failed_call() -> None:
    flow = wf.Flow("failing")
    flow.add("f", FailsOnce()).add("sink", Gather())
    flow.connect("f.out", "sink.inp")
    flow.output("sink.got")
    journal = LogJournal()
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(flow, {"f.inp": [1, 2, 3]})
        failed = await job.wait(timeout_s=10)
    assert failed.status is wf.JobStatus.FAILED
    # the failure's clean-up (queued items dead-lettered) is not replayed
    restored = restore_from(journal.records, flow)
    assert restored.queues["f.inp"] == [2, 3]
    assert restored.rerun_attempts == {"f.inp": [2]}
    assert not [d for d in restored.dead_letters if d.reason in ("job_failed", "handler_failed")]
    resumed_journal = LogJournal()
    async with wf.Engine(journal=resumed_journal) as engine:
        job = await engine.start(flow, {"f.inp": [1, 2, 3]}, restore=restored)
        result = await job.wait(timeout_s=10)
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs["sink.got"] == [[10, 20, 30]]
    starts = [(r["routine"], r["attempt"]) for r in resumed_journal.records if r["t"] == "start"]
    assert starts[0] == ("f", 2)
