"""Resuming from any prefix of a job's journal: nothing lost, nothing done twice.

A crash leaves the store with a prefix of the journal's records. For flows whose
handlers emit as their last action (so a step's emissions and its end are not
interleaved with other records), resuming from *every* prefix must give exactly
the uninterrupted run's outputs, and the interrupted step must run again with
``ctx.attempt`` one higher.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import weirflow as wf
from tests.conftest import assert_settled
from weirflow.runtime import LogJournal, restore_from


class Hop(wf.Routine):
    inp = wf.Slot(capacity=3)
    out = wf.Event()

    @inp.handler
    async def hop(self, n: int, ctx: wf.Context) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        if n % 2:
            await asyncio.sleep(0)  # let other routines interleave their records
        if n > 0:
            await ctx.emit(self.out, n - 1)


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
    f.connect("a.out", "b.inp").connect("b.out", "sink.inp").connect("b.out", "a.inp")
    f.output("sink.got")
    return f


INPUTS = {"a.inp": [5, 3, 4, 1, 0, 2]}


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
        assert len(reruns) == sum(len(a) for a in restored.rerun_attempts.values()), cut
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
    assert restored.queues == {"a.inp": [5]}


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
    """Fans each countdown out to two events; both feed the next routine."""

    inp = wf.Slot(capacity=2)
    left = wf.Event()
    right = wf.Event()

    @inp.handler
    async def split(self, n: int, ctx: wf.Context) -> None:
        if n > 0:
            await ctx.emit(self.left if n % 2 else self.right, n - 1)


@pytest.mark.parametrize("inputs", [[3, 1], [4, 4, 0], [2, 5, 1, 3]])
async def test_every_prefix_of_a_branching_flow(inputs: list[int]) -> None:
    flow = wf.Flow("branchy")
    flow.add("s", Branchy()).add("h", Hop()).add("sink", Gather())
    flow.connect("s.left", "h.inp").connect("s.right", "sink.inp").connect("h.out", "s.inp")
    flow.connect("h.out", "sink.inp")
    flow.output("sink.got")

    async def go(records: list[dict[str, Any]] | None) -> tuple[wf.JobResult, LogJournal]:
        journal = LogJournal()
        async with wf.Engine(journal=journal) as engine:
            restore = restore_from(records, flow) if records is not None else None
            job = await engine.start(flow, {"s.inp": inputs}, restore=restore)
            return await job.wait(timeout_s=20), journal

    reference, journal = await go(None)
    for cut in range(len(journal.records) + 1):
        result, _ = await go(journal.records[:cut])
        assert result.outputs == reference.outputs, cut
        assert_settled(result)
