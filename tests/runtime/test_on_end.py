"""on_end runs once per job after the routine's last call: chains, fan-in, cycles."""

from __future__ import annotations

from typing import Any

import weirflow as wf
from tests.conftest import assert_settled


class Tally(wf.Routine):
    """Counts items, forwards them, and on end emits its count on ``total``."""

    inp = wf.Slot()
    out = wf.Event()
    total = wf.Event()

    @inp.handler
    async def take(self, item: Any, ctx: wf.Context) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        await ctx.emit(self.out, item)

    async def on_end(self, ctx: wf.Context) -> None:
        log: list[str] = self.log  # type: ignore[attr-defined]
        log.append(ctx.routine)
        await ctx.emit(self.total, ctx.state.get("n", 0))


class SyncTally(Tally):
    def on_end(self, ctx: wf.Context) -> None:  # plain def: runs in the pool, emit blocks
        self.log.append(ctx.routine)  # type: ignore[attr-defined]
        ctx.emit(self.total, ctx.state.get("n", 0))


async def _run(flow: wf.Flow, inputs: dict[str, Any]) -> wf.JobResult:
    async with wf.Engine() as engine:
        job = await engine.start(flow, inputs)
        return await job.wait(timeout_s=10)


async def test_chain_on_end_runs_in_order_after_upstream_emissions() -> None:
    log: list[str] = []
    flow = wf.Flow("chain")
    flow.add("a", Tally(log=log))
    flow.add("b", SyncTally(log=log))
    flow.add("c", Tally(log=log))
    flow.connect("a.out", "b.inp")
    flow.connect("a.total", "b.inp")  # a's on_end emission must reach b before b ends
    flow.connect("b.out", "c.inp")
    for r in "abc":
        flow.output(f"{r}.total")
    result = await _run(flow, {"a.inp": list(range(5))})
    assert result.status is wf.JobStatus.COMPLETED
    assert log == ["a", "b", "c"]
    assert result.outputs == {"a.total": [5], "b.total": [6], "c.total": [6]}
    assert_settled(result)


async def test_fan_in_on_end_runs_once_after_every_producer() -> None:
    log: list[str] = []
    flow = wf.Flow("fanin")
    flow.add("p1", Tally(log=log))
    flow.add("p2", Tally(log=log))
    flow.add("sink", Tally(log=log))
    flow.connect("p1.out", "sink.inp")
    flow.connect("p2.out", "sink.inp")
    flow.connect("p1.total", "sink.inp")
    flow.connect("p2.total", "sink.inp")
    flow.output("sink.total")
    result = await _run(flow, {"p1.inp": list(range(30)), "p2.inp": list(range(20))})
    assert log.count("sink") == 1 and log[-1] == "sink"
    assert result.outputs["sink.total"] == [52]


class Countdown(wf.Routine):
    """Passes ``n - 1`` on while positive: two of these in a cycle ping-pong to zero."""

    inp = wf.Slot()
    out = wf.Event()
    done = wf.Event()

    @inp.handler
    async def step(self, n: int, ctx: wf.Context) -> None:
        ctx.state["seen"] = ctx.state.get("seen", 0) + 1
        if n > 0:
            await ctx.emit(self.out, n - 1)

    async def on_end(self, ctx: wf.Context) -> None:
        log: list[str] = self.log  # type: ignore[attr-defined]
        log.append(ctx.routine)
        if self.kick and not ctx.state.get("kicked"):  # type: ignore[attr-defined]
            ctx.state["kicked"] = True
            await ctx.emit(self.out, 3)  # re-enters the cycle: must be processed before the job ends
        await ctx.emit(self.done, ctx.state.get("seen", 0))


async def test_cycle_routines_end_when_the_whole_cycle_is_quiescent() -> None:
    log: list[str] = []
    flow = wf.Flow("cycle")
    flow.add("ping", Countdown(log=log, kick=False))
    flow.add("pong", Countdown(log=log, kick=True))
    flow.add("after", Tally(log=log))
    flow.connect("ping.out", "pong.inp")
    flow.connect("pong.out", "ping.inp")
    flow.connect("ping.done", "after.inp")
    flow.connect("pong.done", "after.inp")
    flow.output("after.out")
    result = await _run(flow, {"ping.inp": [10]})
    assert result.status is wf.JobStatus.COMPLETED
    # 10 -> ping, 9 -> pong, ... 0: ping sees 10,8,..,0 (6), pong sees 9,..,1 (5);
    # both on_ends run once the cycle is quiet, in flow order, before "after" ends
    assert log == ["ping", "pong", "after"]
    assert result.outputs["after.out"] == [6, 5]
    # pong's on_end kicked 3 back into the cycle: processed before the job ended
    # (ping sees 3, 1; pong sees 2, 0), though both on_ends had already reported
    assert result.stats.slots["ping.inp"].processed == 8
    assert result.stats.slots["pong.inp"].processed == 7
    assert_settled(result)


async def test_self_loop_and_on_end_without_items() -> None:
    log: list[str] = []
    flow = wf.Flow("selfloop")
    flow.add("loop", Countdown(log=log, kick=False))
    flow.add("idle", Tally(log=log))
    flow.connect("loop.out", "loop.inp")
    flow.output("loop.done")
    flow.output("idle.total")
    result = await _run(flow, {"loop.inp": [4]})
    assert result.outputs == {"loop.done": [5], "idle.total": [0]}
    assert sorted(log) == ["idle", "loop"]


async def test_keep_open_job_ends_only_after_close_input() -> None:
    log: list[str] = []
    flow = wf.Flow("open")
    flow.add("t", Tally(log=log))
    flow.output("t.total")
    async with wf.Engine() as engine:
        job = await engine.start(flow, keep_open=True)
        for i in range(3):
            await job.send("t.inp", i)
        assert log == []
        assert job.status is wf.JobStatus.RUNNING
        await job.close_input()
        result = await job.wait(timeout_s=10)
    assert result.outputs["t.total"] == [3]
    assert log == ["t"]
