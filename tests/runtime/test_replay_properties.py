"""Property: a crash at any point of the journal changes nothing a user sees.

Random flows (cycles included) of routines that emit, work on, then emit again,
with state, ``on_end`` emits, batches, concurrency, plain ``def`` handlers and
handlers that fail before emitting. The uninterrupted run is the reference; then
its journal is cut at *every* record boundary (which covers every prefix a store
can hold, also those inside a step the durable journal folds into one record), the
job is resumed from the cut, and its outputs, dead letters and routine states must
equal the reference's as multisets: every item's effect exactly once.

The durable variant runs the same flows on the ``DurableJournal`` (a memory store
that yields during each commit, small batches), cuts what the store committed,
decoded, and resumes from items that went through JSON.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import weirflow as wf
from tests.conftest import assert_settled
from tests.runtime.bounded import TIMEOUT, run_bounded
from weirflow.durable import JobSpec, open_store
from weirflow.durable.journal import DurableJournal
from weirflow.runtime import LogJournal, restore_from

#: an example replays its run from every cut (hundreds of runs): more room than one run's
REPLAY_LIMIT_S = 180.0

Records = list[dict[str, Any]]


class Twice(wf.Routine):
    """Counts ``n`` down on ``out``, works (other routines run), then logs ``n``."""

    inp = wf.Slot()
    out = wf.Event()
    log = wf.Event()
    counts = True  # keeps a count in its state

    @inp.handler
    async def step(self, n: int, ctx: wf.Context) -> None:
        if self.counts:
            ctx.state["calls"] = ctx.state.get("calls", 0) + 1
        if n > 0:
            await ctx.emit(self.out, n - 1)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await ctx.emit(self.log, [ctx.routine, n])


class Sync(wf.Routine):
    inp = wf.Slot()
    out = wf.Event()
    log = wf.Event()

    @inp.handler
    def step(self, n: int, ctx: wf.Context) -> None:
        ctx.state["calls"] = ctx.state.get("calls", 0) + 1
        if n > 0:
            ctx.emit(self.out, n - 1)
        time.sleep(0)  # lets the loop run other routines
        ctx.emit(self.log, [ctx.routine, n])


class Wide(Twice):
    """Three calls at once. No state: concurrent calls share it, and a step's state is
    what the routine held when it ended, changes of calls still running included, so a
    crash can repeat those (docs/durability.md)."""

    concurrency = 3
    counts = False


class Batch(wf.Routine):
    inp = wf.Slot()
    out = wf.Event()
    log = wf.Event()

    @wf.batch(inp, max_items=3, max_wait_s=0.001)
    async def step(self, items: list[int], ctx: wf.Context) -> None:
        ctx.state["calls"] = ctx.state.get("calls", 0) + len(items)
        for n in items:
            if n > 0:
                await ctx.emit(self.out, n - 1)
            await asyncio.sleep(0)
            await ctx.emit(self.log, [ctx.routine, n])


class Ender(Twice):
    """``on_end`` emits what it saw, works, and emits again."""

    async def on_end(self, ctx: wf.Context) -> None:
        await ctx.emit(self.log, [ctx.routine, "calls", ctx.state.get("calls", 0)])
        await asyncio.sleep(0)
        await ctx.emit(self.log, [ctx.routine, "end"])


class Flaky(Twice):
    """Fails before emitting: on the first attempt when ``n == 1`` (a retry succeeds), on
    every attempt when ``n == 2`` (dead-lettered after its retry)."""

    on_error = wf.ErrorPolicy(retries=1, backoff=wf.Backoff(initial_s=0, jitter=False), then="dead_letter")

    @Twice.inp.handler
    async def step(self, n: int, ctx: wf.Context) -> None:
        await asyncio.sleep(0)
        if n == 2 or (n == 1 and ctx.attempt == 1):
            raise ValueError(f"no {n}")
        await Twice.step(self, n, ctx)


class Fan(wf.Routine):
    """Emits one object on two events at once (``asyncio.gather``), then logs ``n``."""

    inp = wf.Slot()
    out = wf.Event()
    log = wf.Event()

    @inp.handler
    async def step(self, n: int, ctx: wf.Context) -> None:
        if n > 0:
            m = n - 1  # one object, two emits in flight (``out`` may wait for room)
            await asyncio.gather(ctx.emit(self.out, m), ctx.emit(self.log, m))
        await ctx.emit(self.log, [ctx.routine, n])


class Pass(wf.Routine):
    """No state, one emit to ``out`` at most: passes ``n - 1`` on while ``n > 1``, passes 0
    and logs at 1, does nothing at 0 (steps the durable journal writes as runs)."""

    inp = wf.Slot()
    out = wf.Event()
    log = wf.Event()

    @inp.handler
    async def step(self, n: int, ctx: wf.Context) -> None:
        if n > 0:
            await ctx.emit(self.out, n - 1)
        if n == 1:
            await ctx.emit(self.log, [ctx.routine, n])


KINDS: dict[str, type[wf.Routine]] = {
    "fan": Fan,
    "pass": Pass,
    "twice": Twice,
    "sync": Sync,
    "wide": Wide,
    "batch": Batch,
    "ender": Ender,
    "flaky": Flaky,
}


@dataclass
class Shape:
    kinds: list[str]
    edges: list[tuple[int, int]]
    capacities: list[int]
    inputs: dict[int, list[int]]


@st.composite
def shapes(draw: Any, max_items: int = 4, kinds_from: list[str] | None = None) -> Shape:
    n = draw(st.integers(2, 4))
    kinds = draw(st.lists(st.sampled_from(kinds_from or sorted(KINDS)), min_size=n, max_size=n))
    pairs = [(i, j) for i in range(n) for j in range(n)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=5))
    edges = [e for e in edges if sum(1 for a, _ in edges if a == e[0]) <= 2]
    capacities = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    for i, j in edges:
        if j <= i:  # a back edge (a cycle): room for every item, so blocking cannot deadlock
            capacities[j] = 10_000
    inputs = draw(
        st.dictionaries(
            st.integers(0, n - 1),
            st.lists(st.integers(0, 3), min_size=1, max_size=max_items),
            min_size=1,
            max_size=2,
        )
    )
    return Shape(kinds, edges, capacities, inputs)


def build(shape: Shape) -> wf.Flow:
    flow = wf.Flow("random")
    for i, kind in enumerate(shape.kinds):
        flow.add(f"r{i}", KINDS[kind]())
        flow.slot(f"r{i}.inp", capacity=shape.capacities[i])
        flow.output(f"r{i}.log")
    for i, j in shape.edges:
        flow.connect(f"r{i}.out", f"r{j}.inp")
    return flow


@dataclass
class Seen:
    """What a user sees of a finished job, as multisets (items as JSON, as a store has them)."""

    outputs: Counter[str]
    dead_letters: Counter[str]
    states: dict[str, Any]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


async def run(
    flow: wf.Flow, inputs: dict[str, list[int]], records: Records | None, journal: wf.Journal
) -> tuple[wf.JobResult, Seen]:
    async with wf.Engine(journal=journal) as engine:
        restore = restore_from(records, flow) if records is not None else None
        job = await engine.start(flow, inputs, restore=restore)
        result = await job.wait(timeout_s=30)
        states = {name: json.loads(_json(job.routine_state(name))) for name in flow.routines}
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert_settled(result)
    seen = Seen(
        Counter(_json(x) for items in result.outputs.values() for x in items),
        Counter(_json([d.slot, d.item, d.reason]) for d in result.dead_letters),
        states,
    )
    return result, seen


def inputs_of(shape: Shape) -> dict[str, list[int]]:
    return {f"r{i}.inp": items for i, items in shape.inputs.items()}


async def every_cut(shape: Shape, second_crashes: int) -> None:
    flow, inputs = build(shape), inputs_of(shape)
    log = LogJournal()
    _, reference = await run(flow, inputs, None, log)
    records = log.records
    for cut in range(len(records) + 1):
        resumed = LogJournal()
        _, seen = await run(flow, inputs, records[:cut], resumed)
        assert seen == reference, cut
        # completed steps do not run again
        done = {(r["routine"], r["seq"]) for r in records[:cut] if r["t"] == "done" and r["final"]}
        assert not done & {(r["routine"], r["seq"]) for r in resumed.records if r["t"] == "start"}
        # and a second crash while resuming
        step = max(1, len(resumed.records) // max(1, second_crashes))
        for cut2 in range(step // 2, len(resumed.records), step):
            _, again = await run(flow, inputs, records[:cut] + resumed.records[:cut2], LogJournal())
            assert again == reference, (cut, cut2)


@TIMEOUT
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes(max_items=3))
def test_resuming_from_every_cut_gives_the_uninterrupted_run(shape: Shape) -> None:
    run_bounded(lambda: every_cut(shape, second_crashes=1), shape, limit_s=REPLAY_LIMIT_S)


@pytest.mark.slow
@TIMEOUT
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes())
def test_resuming_from_every_cut_gives_the_uninterrupted_run_many_flows(shape: Shape) -> None:
    run_bounded(lambda: every_cut(shape, second_crashes=3), shape, limit_s=REPLAY_LIMIT_S)


class Yielding:
    """The memory store, letting the job run on while each batch is being committed."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def append_journal(
        self, rows: Any, *, tokens: Any = None, batches: Any = None, resent: bool = False
    ) -> list[str]:
        for _ in range(3):
            await asyncio.sleep(0)
        refused: list[str] = await self.store.append_journal(
            rows, tokens=tokens, batches=batches, resent=resent
        )
        return refused

    async def read_journal(self, job_id: str) -> list[str]:
        return list(await self.store.read_journal(job_id))

    async def clear_journal(self, job_id: str, *, token: int | None = None) -> None:
        await self.store.clear_journal(job_id, token=token)


async def every_durable_cut(shape: Shape) -> list[str]:
    """Cuts the committed journal everywhere, resumes from each cut; returns the lines the
    store held."""
    flow, inputs = build(shape), inputs_of(shape)
    store = open_store("memory://")
    await store.open()
    job_id = await store.submit(JobSpec(flow=flow.name, inputs={}))
    durable = DurableJournal(Yielding(store), max_batch=5, drop_completed=False)
    async with wf.Engine(journal=durable) as engine:
        job = await engine.start(flow, inputs, job_id=job_id)
        assert (await job.wait(timeout_s=30)).status is wf.JobStatus.COMPLETED
    await durable.close()
    records = await durable.records_of(job_id)
    _, reference = await run(flow, inputs, None, LogJournal())
    for cut in range(len(records) + 1):
        _, seen = await run(flow, inputs, records[:cut], LogJournal())
        assert seen == reference, cut
    return [line for row in await store.read_journal(job_id) for line in row.split("\n")]


@TIMEOUT
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes(max_items=3))
def test_resuming_from_every_cut_of_a_durable_journal_gives_the_uninterrupted_run(shape: Shape) -> None:
    run_bounded(lambda: every_durable_cut(shape), shape, limit_s=REPLAY_LIMIT_S)


@pytest.mark.slow
@TIMEOUT
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes())
def test_resuming_from_every_cut_of_a_durable_journal_many_flows(shape: Shape) -> None:
    run_bounded(lambda: every_durable_cut(shape), shape, limit_s=REPLAY_LIMIT_S)


@TIMEOUT
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes(max_items=4, kinds_from=["pass", "pass", "twice", "flaky", "fan"]))
def test_resuming_from_every_cut_of_a_durable_journal_with_runs_of_steps(shape: Shape) -> None:
    """Flows of mostly stateless one-emit routines, whose steps in a row the durable
    journal writes as one record (``[4, ...]``, ``[5, ...]``), cut inside those too."""
    run_bounded(lambda: every_durable_cut(shape), shape, limit_s=REPLAY_LIMIT_S)


def test_a_chain_of_runs_resumes_from_every_cut() -> None:
    """A chain of stateless forwarders: the store holds runs of steps, in both forms (with
    an emit and without), and every cut inside them resumes to the uninterrupted run."""
    shape = Shape(["pass", "pass", "twice"], [(0, 1), (1, 2)], [10_000, 10_000, 10_000], {0: [3, 3, 0, 2, 3]})
    lines = asyncio.run(asyncio.wait_for(every_durable_cut(shape), REPLAY_LIMIT_S))
    assert any(line.startswith("[5,") for line in lines), lines
    assert any(line.startswith("[4,") for line in lines), lines
