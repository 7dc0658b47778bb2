"""Activation policies, concurrency, sync/async mixes and per-job isolation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import weirflow as wf
from tests.conftest import assert_settled
from tests.runtime.flows import Collect, Forward, SyncForward


async def _run(flow: wf.Flow, inputs: dict[str, Any], engine: wf.Engine | None = None) -> wf.JobResult:
    async with wf.Engine() as own:
        job = await (engine or own).start(flow, inputs)
        return await job.wait(timeout_s=20)


async def test_sync_and_async_handlers_mixed_in_one_chain() -> None:
    threads: set[str] = set()

    class Where(wf.Routine):
        inp = wf.Slot(capacity=4)
        out = wf.Event()

        @inp.handler
        def note(self, item: int, ctx: wf.Context) -> None:
            threads.add(threading.current_thread().name)
            ctx.emit(self.out, item * 2)

    flow = wf.Flow("mixed")
    flow.add("a", Forward())
    flow.add("b", SyncForward())
    flow.add("c", Forward())
    flow.add("d", Where())
    flow.add("e", Collect())
    for x, y in zip("abcd", "bcde", strict=True):
        flow.connect(f"{x}.out", f"{y}.inp")
    flow.slot("b.inp", capacity=2)
    flow.output("e.seen")
    result = await _run(flow, {"a.inp": list(range(500))})
    assert result.outputs["e.seen"] == [[i * 2 for i in range(500)]]
    assert threads and all(t.startswith("weirflow") for t in threads)
    assert_settled(result)


async def test_functional_routines_values_and_generators() -> None:
    @wf.routine
    def double(x: int) -> int:
        return x * 2

    @wf.routine
    async def skip_odd(x: int) -> int | None:
        return x if x % 4 == 0 else None

    @wf.routine(capacity=3)
    def explode(x: int) -> Any:
        yield from range(x, x + 2)

    @wf.routine
    async def agen(x: int, ctx: wf.Context) -> Any:
        yield (ctx.routine, x)

    flow = wf.Flow("functional")
    for name, r in [("double", double), ("skip", skip_odd), ("explode", explode), ("agen", agen)]:
        flow.add(name, r)
    flow.connect("double.output", "skip.input")
    flow.connect("skip.output", "explode.input")
    flow.connect("explode.output", "agen.input")
    flow.output("agen.output")
    assert double(21) == 42  # a functional routine is still callable
    result = await _run(flow, {"double.input": list(range(6))})
    # 0..5 doubled: 0,2,4,6,8,10 -> multiples of 4: 0,4,8 -> each x, x+1
    assert result.outputs["agen.output"] == [("agen", v) for v in (0, 1, 4, 5, 8, 9)]


async def test_batch_hands_lists_and_flushes_the_tail() -> None:
    class Batcher(wf.Routine):
        inp = wf.Slot()
        sizes = wf.Event()

        @wf.batch(inp, max_items=10, max_wait_s=30)
        async def many(self, items: list[int], ctx: wf.Context) -> None:
            await ctx.emit(self.sizes, items)

    flow = wf.Flow("batch")
    flow.add("b", Batcher())
    flow.output("b.sizes")
    # max_wait_s is 30 s: the partial tail must go as soon as no more can arrive
    result = await _run(flow, {"b.inp": list(range(95))})
    batches = result.outputs["b.sizes"]
    assert [x for b in batches for x in b] == list(range(95))
    assert all(len(b) <= 10 for b in batches)
    assert len(batches[-1]) == 5
    assert result.stats.duration_s < 30


async def test_join_pairs_items_and_dead_letters_the_unmatched() -> None:
    class Pair(wf.Routine):
        left = wf.Slot()
        right = wf.Slot()
        out = wf.Event()

        @wf.join(left, right)
        async def pair(self, a: int, b: str, ctx: wf.Context) -> None:
            await ctx.emit(self.out, (a, b))

    flow = wf.Flow("join")
    flow.add("p", Pair())
    flow.output("p.out")
    result = await _run(flow, {"p.left": [1, 2, 3], "p.right": ["a", "b"]})
    assert result.outputs["p.out"] == [(1, "a"), (2, "b")]
    (letter,) = result.dead_letters
    assert (letter.slot, letter.item, letter.reason) == ("p.left", 3, "unconsumed")
    assert letter.error == "no matching item can arrive for this join"
    assert_settled(result)


async def test_concurrency_allows_n_calls_at_once() -> None:
    running = 0
    peak = 0
    four = asyncio.Event()

    class Wide(wf.Routine):
        inp = wf.Slot()
        concurrency = 4

        @inp.handler
        async def work(self, item: int, ctx: wf.Context) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == 4:
                four.set()
            await four.wait()  # the first calls wait until four run at once
            running -= 1

    flow = wf.Flow("wide")
    flow.add("w", Wide())
    result = await _run(flow, {"w.inp": list(range(20))})
    assert result.status is wf.JobStatus.COMPLETED
    assert peak == 4
    assert result.stats.slots["w.inp"].processed == 20


async def test_two_concurrent_jobs_of_one_flow_are_isolated() -> None:
    gate = asyncio.Event()

    class Gate(wf.Routine):
        inp = wf.Slot(capacity=2)
        out = wf.Event()

        @inp.handler
        async def hold(self, item: Any, ctx: wf.Context) -> None:
            await gate.wait()
            ctx.state["n"] = ctx.state.get("n", 0) + 1
            await ctx.emit(self.out, (ctx.job_id, item, ctx.state["n"]))

    flow = wf.Flow("iso")
    flow.add("g", Gate())
    flow.add("c", Collect())
    flow.connect("g.out", "c.inp")
    flow.output("c.seen")
    async with wf.Engine() as engine:
        j1 = await engine.start(flow, {"g.inp": [f"one-{i}" for i in range(50)]})
        j2 = await engine.start(flow, {"g.inp": [f"two-{i}" for i in range(30)]})
        gate.set()
        r1, r2 = await j1.wait(timeout_s=10), await j2.wait(timeout_s=10)
    assert r1.outputs["c.seen"] == [[(j1.id, f"one-{i}", i + 1) for i in range(50)]]
    assert r2.outputs["c.seen"] == [[(j2.id, f"two-{i}", i + 1) for i in range(30)]]
    assert r1.stats.slots["g.inp"].enqueued == 50 and r2.stats.slots["g.inp"].enqueued == 30


async def test_wf_run_is_the_sync_one_shot() -> None:
    def in_thread() -> wf.JobResult:
        flow = wf.Flow("sync")
        flow.add("c", Collect())
        flow.output("c.seen")
        return wf.run(flow, {"c.inp": [1, 2, 3]}, timeout_s=10)

    result = await asyncio.to_thread(in_thread)
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs["c.seen"] == [[1, 2, 3]]
