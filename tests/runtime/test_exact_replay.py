"""Exact replay: a step interrupted after it emitted does not deliver its items twice.

The scenario of issue 9 §2: s1 emits an item and goes on working; s2 starts on that
item; the process dies after s2's ``start`` is recorded and before s1's ``done``. The
resumed job runs s1 again (its n-th emit is matched with the first run's n-th, which
was already delivered) and s2 again on the item it had taken: ``s3`` sees it once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from structlog.testing import capture_logs

import weirflow as wf
from tests.conftest import assert_settled
from weirflow.runtime import LogJournal, restore_from


class EmitThenWork(wf.Routine):
    """Emits its item, works on (other routines run meanwhile), emits it again tagged."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def go(self, n: int, ctx: wf.Context) -> None:
        ctx.state.setdefault("attempts", []).append(ctx.attempt)
        await ctx.emit(self.out, n)
        for _ in range(5):  # work after emitting: s2 starts on the item meanwhile
            await asyncio.sleep(0)
        await ctx.emit(self.out, n + 1000)


class Pass(wf.Routine):
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def go(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


class Ending(wf.Routine):
    """Counts its items; ``on_end`` emits the count, yields, then emits a marker."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def go(self, item: Any, ctx: wf.Context) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        await ctx.emit(self.out, item)

    async def on_end(self, ctx: wf.Context) -> None:
        await ctx.emit(self.out, ["count", ctx.state.get("n", 0)])
        await asyncio.sleep(0)
        await ctx.emit(self.out, ["end", ctx.attempt])


def three() -> wf.Flow:
    f = wf.Flow("three")
    f.add("s1", EmitThenWork()).add("s2", Pass()).add("s3", Ending())
    f.connect("s1.out", "s2.inp").connect("s2.out", "s3.inp")
    f.output("s3.out")
    return f


INPUTS = {"s1.inp": [1, 2]}


class Watching(wf.Hooks):
    """Holds every emit and route for a moment: the items take the hooks' delivery path."""

    async def on_emit(self, point: wf.HookPoint) -> None:
        await asyncio.sleep(0)

    async def on_route(self, point: wf.HookPoint) -> None:
        await asyncio.sleep(0)


async def run(
    flow: wf.Flow, records: list[dict[str, Any]] | None, hooks: tuple[wf.Hooks, ...] = ()
) -> tuple[wf.JobResult, LogJournal]:
    journal = LogJournal()
    async with wf.Engine(journal=journal, hooks=list(hooks)) as engine:
        restore = restore_from(records, flow) if records is not None else None
        job = await engine.start(flow, INPUTS, restore=restore)
        return await job.wait(timeout_s=20), journal


def bag(result: wf.JobResult) -> Counter[str]:
    return Counter(repr(x) for x in result.outputs["s3.out"] if not (isinstance(x, list) and x[0] == "end"))


async def test_a_crash_between_a_downstream_start_and_the_emitters_done_delivers_once() -> None:
    flow = three()
    reference, journal = await run(flow, None)
    records = journal.records
    # the point of the issue: s2 started on s1's item, s1 has not finished
    s2_start = next(i for i, r in enumerate(records) if r["t"] == "start" and r["routine"] == "s2")
    s1_done = next(i for i, r in enumerate(records) if r["t"] == "done" and r["routine"] == "s1")
    assert s2_start < s1_done
    result, resumed = await run(flow, records[: s2_start + 1])
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert_settled(result)
    assert bag(result) == bag(reference)
    # s1 ran again on the same item (same seq, attempt 2), and so did s2
    reruns = [(r["routine"], r["seq"], r["attempt"]) for r in resumed.records if r["t"] == "start"]
    assert ("s1", 1, 2) in reruns and ("s2", 1, 2) in reruns


@pytest.mark.parametrize("hooks", [(), (Watching(),)], ids=["plain", "hooks-watching"])
async def test_every_cut_of_the_journal_gives_the_crash_free_outputs_exactly(
    hooks: tuple[wf.Hooks, ...],
) -> None:
    flow = three()
    reference, journal = await run(flow, None, hooks)
    records = journal.records
    for cut in range(len(records) + 1):
        result, resumed = await run(flow, records[:cut], hooks)
        assert result.status is wf.JobStatus.COMPLETED, (cut, result.error)
        assert_settled(result)
        assert bag(result) == bag(reference), cut
        # and a second crash anywhere in the resumed run
        for cut2 in range(0, len(resumed.records) + 1, 3):
            again, _ = await run(flow, records[:cut] + resumed.records[:cut2], hooks)
            assert bag(again) == bag(reference), (cut, cut2)


async def test_an_interrupted_on_end_runs_again_one_attempt_higher() -> None:
    flow = three()
    reference, journal = await run(flow, None)
    records = journal.records
    end_start = next(
        i for i, r in enumerate(records) if r["t"] == "start" and r["routine"] == "s3" and not r["consumed"]
    )
    result, _ = await run(flow, records[: end_start + 1])
    assert bag(result) == bag(reference)
    assert [x for x in result.outputs["s3.out"] if isinstance(x, list) and x[0] == "end"] == [["end", 2]]


@pytest.mark.parametrize("cut_after", ["enq", "start"])
async def test_a_rerun_that_emits_differently_loses_nothing(cut_after: str) -> None:
    """A rerun whose n-th emit differs from the first run's delivers it (nothing lost);
    what the first run delivered stays delivered; positions it re-emits unchanged are
    not delivered again."""

    class Drifting(wf.Routine):
        inp = wf.Slot()
        out = wf.Event()

        @inp.handler
        async def go(self, n: int, ctx: wf.Context) -> None:
            await ctx.emit(self.out, n)  # the same on every attempt
            for _ in range(3):
                await asyncio.sleep(0)
            await ctx.emit(self.out, [n, ctx.attempt])  # differs on the rerun
            for _ in range(3):
                await asyncio.sleep(0)
            if ctx.attempt == 1:
                await ctx.emit(self.out, "only-first")  # the rerun emits fewer
                for _ in range(3):
                    await asyncio.sleep(0)

    f = wf.Flow("drift")
    f.add("s1", Drifting()).add("s2", Pass())
    f.connect("s1.out", "s2.inp")
    f.output("s2.out")

    async def go(records: list[dict[str, Any]] | None) -> tuple[wf.JobResult, LogJournal]:
        journal = LogJournal()
        async with wf.Engine(journal=journal) as engine:
            restore = restore_from(records, f) if records is not None else None
            job = await engine.start(f, {"s1.inp": [7]}, restore=restore)
            return await job.wait(timeout_s=20), journal

    _, journal = await go(None)
    records = journal.records
    # cut after s1's third item was enqueued (or after s2 started on it)
    enqs = [i for i, r in enumerate(records) if r["t"] == "enq" and r["slot"] == "s2.inp"]
    cut = enqs[2] + 1
    if cut_after == "start":  # s2 took the third item, s1 is still running
        cut = next(i for i, r in enumerate(records) if i > enqs[2] and r["t"] == "start") + 1
        assert records[cut - 1]["routine"] == "s2"
    assert not any(r["t"] == "done" and r["routine"] == "s1" for r in records[:cut])
    with capture_logs() as logs:
        result, _ = await go(records[:cut])
    assert result.status is wf.JobStatus.COMPLETED
    # a user reading the worker's log sees what differed
    warnings = {e["event"]: e for e in logs if e["log_level"] == "warning"}
    assert warnings["rerun_emitted_differently"]["position"] == 1
    assert warnings["rerun_emitted_differently"]["delivered_to"] == ["s2.inp"]
    assert warnings["rerun_emitted_fewer"]["delivered_before"] == 3
    assert sorted(map(repr, result.outputs["s2.out"])) == sorted(map(repr, [7, [7, 1], "only-first", [7, 2]]))


class FanOut(wf.Routine):
    """Sends the same object to two events at once (``asyncio.gather``), a dict and a string.
    The first emits fill a narrow ``a`` slot, so the dict's emit on ``a`` waits there while
    the one on ``b`` is enqueued."""

    inp = wf.Slot()
    a = wf.Event()
    b = wf.Event()

    @inp.handler
    async def go(self, n: int, ctx: wf.Context) -> None:
        await ctx.emit(self.a, f"first{n}")
        await ctx.emit(self.a, f"second{n}")
        rec = {"n": n}
        await asyncio.gather(ctx.emit(self.a, rec), ctx.emit(self.b, rec))
        tag = f"s{n}"
        await asyncio.gather(ctx.emit(self.a, tag), ctx.emit(self.b, tag))


class Narrow(wf.Routine):
    """A slow ``Pass`` with a slot of capacity 1: an emitter waits while it holds an item."""

    inp = wf.Slot(capacity=1)
    out = wf.Event()

    @inp.handler
    async def go(self, item: Any, ctx: wf.Context) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await ctx.emit(self.out, item)


def fan_out(*, capacity: int | None) -> wf.Flow:
    f = wf.Flow("fan")
    kind = Pass if capacity is None else Narrow
    f.add("s1", FanOut()).add("pa", kind()).add("pb", kind()).add("s3", Ending())
    f.connect("s1.a", "pa.inp").connect("s1.b", "pb.inp")
    f.connect("pa.out", "s3.inp").connect("pb.out", "s3.inp")
    f.output("s3.out")
    return f


@pytest.mark.parametrize("hooks", [(), (Watching(),)], ids=["plain", "hooks-watching"])
@pytest.mark.parametrize("capacity", [None, 1], ids=["unbounded", "capacity-1"])
async def test_concurrent_emits_of_the_same_object_are_delivered_once_at_every_cut(
    hooks: tuple[wf.Hooks, ...], capacity: int | None
) -> None:
    flow = fan_out(capacity=capacity)
    reference, journal = await run(flow, None, hooks)
    assert bag(reference) == Counter(
        {"'first1'": 1, "'first2'": 1, "'second1'": 1, "'second2'": 1}
        | {"{'n': 1}": 2, "{'n': 2}": 2, "'s1'": 2, "'s2'": 2, "['count', 12]": 1}
    )
    records = journal.records
    for cut in range(len(records) + 1):
        result, _ = await run(flow, records[:cut], hooks)
        assert result.status is wf.JobStatus.COMPLETED, (cut, result.error)
        assert_settled(result)
        assert bag(result) == bag(reference), cut


class Slow(wf.Routine):
    """Takes a while over each item, so its narrow slot refuses what comes meanwhile."""

    inp = wf.Slot(capacity=1, overflow="drop_newest")
    out = wf.Event()

    @inp.handler
    async def go(self, item: Any, ctx: wf.Context) -> None:
        for _ in range(20):
            await asyncio.sleep(0)
        await ctx.emit(self.out, item)


class DropAll(wf.Hooks):
    """Drops the starting input ``"x"`` at its enqueue."""

    async def on_enqueue(self, point: wf.HookPoint) -> None:
        if point.item == "x":
            point.drop("not_x")


@pytest.mark.parametrize("overflow", ["drop_newest", "fail", "hook"])
async def test_refused_starting_inputs_count_as_fed_when_the_job_resumes(overflow: str) -> None:
    """Inputs a slot refused (its policy, or an enqueue hook) are dead letters, not items to
    feed again: at every cut, each input ends once (an output or a dead letter), and what
    the journal had refused stays refused. (Which of the later inputs a narrow slot
    refuses depends on timing, so the resumed job's split may differ from the first.)"""
    f = wf.Flow("refusing")
    f.add("s", Slow())
    if overflow == "fail":
        f.slot("s.inp", capacity=1, overflow="fail")
    f.output("s.out")
    items = ["a", "x", "b", "c", "x", "d"] if overflow == "hook" else ["a", "b", "c", "d"]
    hooks = [DropAll()] if overflow == "hook" else []

    async def go(records: list[dict[str, Any]] | None) -> tuple[wf.JobResult, LogJournal]:
        journal = LogJournal()
        async with wf.Engine(journal=journal, hooks=hooks) as engine:
            restore = restore_from(records, f) if records is not None else None
            job = await engine.start(f, {"s.inp": items}, restore=restore)
            return await job.wait(timeout_s=20), journal

    def ends(result: wf.JobResult) -> Counter[str]:
        return Counter(result.outputs["s.out"]) + Counter(d.item for d in result.dead_letters)

    reference, journal = await go(None)
    assert reference.dead_letters, "the slot refused some inputs"
    assert ends(reference) == Counter(items)
    records = journal.records
    for cut in range(len(records) + 1):
        result, _ = await go(records[:cut])
        assert result.status is wf.JobStatus.COMPLETED, (cut, result.error)
        assert ends(result) == Counter(items), cut
        refused = Counter(r["item"] for r in records[:cut] if r["t"] == "dl")
        assert not refused - Counter(d.item for d in result.dead_letters), cut
