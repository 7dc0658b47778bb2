"""A flow's compiled plan (``runtime.plan``) is reused by its jobs, and remade when the
flow changes: a flow edited between two jobs runs as edited."""

from __future__ import annotations

import pytest

import weirflow as wf
from tests.conftest import assert_settled
from tests.runtime.flows import Collect, Forward


def _chain(n: int) -> wf.Flow:
    flow = wf.Flow(f"chain{n}")
    for i in range(n):
        flow.add(f"r{i}", Forward())
    for i in range(n - 1):
        flow.connect(f"r{i}.out", f"r{i + 1}.inp")
    flow.output(f"r{n - 1}.out")
    return flow


async def test_jobs_of_one_flow_share_its_plan() -> None:
    flow = _chain(3)
    async with wf.Engine() as engine:
        a = await engine.start(flow, {"r0.inp": [1]})
        b = await engine.start(flow, {"r0.inp": [2]})
        assert a.plan is b.plan
        assert (await a.wait(5)).outputs == {"r2.out": [1]}
        assert (await b.wait(5)).outputs == {"r2.out": [2]}


async def test_a_flow_edited_between_jobs_runs_as_edited() -> None:
    flow = _chain(2)
    async with wf.Engine() as engine:
        first = await engine.start(flow, {"r0.inp": [1, 2]})
        assert (await first.wait(5)).outputs == {"r1.out": [1, 2]}

        flow.add("sink", Collect())  # a new routine, connection and output
        flow.connect("r1.out", "sink.inp")
        flow.output("sink.seen")
        flow.slot("r1.inp", capacity=1)  # and a slot's settings
        second = await engine.start(flow, {"r0.inp": [3, 4]})
        result = await second.wait(5)
        assert result.outputs == {"r1.out": [3, 4], "sink.seen": [[3, 4]]}
        assert result.stats.slots["r1.inp"].capacity == 1
        assert result.stats.slots["sink.inp"].processed == 2
        assert_settled(result)


async def test_an_edit_that_breaks_the_flow_is_refused_at_the_next_start() -> None:
    flow = _chain(2)
    async with wf.Engine() as engine:
        await (await engine.start(flow, {"r0.inp": [1]})).wait(5)
        flow.outputs.append("nope.out")  # (added without the check ``output()`` makes)
        with pytest.raises(wf.FlowError, match="nope"):
            await engine.start(flow, {"r0.inp": [1]})
        assert all(job.finished for job in engine.jobs.values())


async def test_a_long_idle_chain_ends_in_one_go() -> None:
    """Components with no ``on_end`` end at once, each letting the next end, from a list
    (not by recursion): 3,000 routines with no input complete."""
    flow = _chain(3000)
    async with wf.Engine() as engine:
        job = await engine.start(flow, {})
        result = await job.wait(30)
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs == {"r2999.out": []}
