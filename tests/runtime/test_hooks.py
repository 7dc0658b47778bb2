"""Hooks see every point of the data path and can hold, replace or drop items."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import weirflow as wf
from tests.conftest import assert_balanced, assert_settled
from tests.runtime.flows import Collect, Forward


def _flow() -> wf.Flow:
    flow = wf.Flow("hooked")
    flow.add("a", Forward())
    flow.add("b", Collect())
    flow.connect("a.out", "b.inp")
    flow.output("b.seen")
    return flow


class Recorder(wf.Hooks):
    def __init__(self) -> None:
        self.points: list[tuple[str, str | None, str | None, Any]] = []
        self.statuses: list[str] = []

    async def on_emit(self, point: wf.HookPoint) -> None:
        self.points.append(("emit", point.event, point.slot, point.item))

    async def on_route(self, point: wf.HookPoint) -> None:
        self.points.append(("route", point.event, point.slot, point.item))

    async def on_enqueue(self, point: wf.HookPoint) -> None:
        self.points.append(("enqueue", point.event, point.slot, point.item))

    async def on_handler_start(self, point: wf.HookPoint) -> None:
        self.points.append(("start", point.routine, point.slot, point.item))

    def on_job_status(self, job: wf.Job, status: wf.JobStatus, reason: str | None) -> None:
        self.statuses.append(status.value)


async def test_every_hook_point_in_order() -> None:
    rec = Recorder()
    async with wf.Engine(hooks=[rec]) as engine:
        job = await engine.start(_flow(), {"a.inp": ["x"]})
        result = await job.wait(timeout_s=10)
    assert rec.points == [
        ("enqueue", None, "a.inp", "x"),
        ("start", "a", "a.inp", "x"),
        ("emit", "a.out", None, "x"),
        ("route", "a.out", "b.inp", "x"),
        ("enqueue", None, "b.inp", "x"),
        ("start", "b", "b.inp", "x"),
        ("emit", "b.seen", None, ["x"]),
    ]
    assert rec.statuses == ["running", "completed"]
    assert result.outputs["b.seen"] == [["x"]]


class Hold(wf.Hooks):
    """Holds every item routed over a connection until released; replaces or drops some."""

    def __init__(self) -> None:
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def on_route(self, point: wf.HookPoint) -> None:
        if point.item == 3:
            self.held.set()
            await self.release.wait()
            point.item = 30
        elif point.item == 5:
            point.drop("debugger:not wanted")


async def test_a_held_item_keeps_the_accounting_and_blocks_only_its_producer() -> None:
    hold = Hold()
    async with wf.Engine(hooks=[hold]) as engine:
        job = await engine.start(_flow(), {"a.inp": list(range(8))})
        await hold.held.wait()
        snap = job.queues()
        assert_balanced(snap)
        # item 3 is held inside a's emit: a's call is in flight, b has 0..2
        assert snap["a.inp"].in_flight == 1
        assert snap["b.inp"].enqueued == 3
        point = await job.pause()  # a call held by a hook is at a safe point
        assert point.queues["a.inp"].in_flight == 1
        await job.resume()
        hold.release.set()
        result = await job.wait(timeout_s=10)
    assert result.outputs["b.seen"] == [[0, 1, 2, 30, 4, 6, 7]]
    (letter,) = result.dead_letters
    assert (letter.slot, letter.item, letter.reason) == ("b.inp", 5, "debugger:not wanted")
    assert_settled(result)


async def test_handler_start_hook_can_drop_and_replace() -> None:
    class Edit(wf.Hooks):
        async def on_handler_start(self, point: wf.HookPoint) -> None:
            if point.routine == "b" and point.item == 1:
                point.drop("debugger:skip")
            elif point.routine == "b":
                point.item = point.item * 100

    async with wf.Engine(hooks=[Edit()]) as engine:
        job = await engine.start(_flow(), {"a.inp": [0, 1, 2]})
        result = await job.wait(timeout_s=10)
    assert result.outputs["b.seen"] == [[0, 200]]
    assert [(d.slot, d.item, d.reason) for d in result.dead_letters] == [("b.inp", 1, "debugger:skip")]
    assert result.stats.slots["b.inp"].processed == 2
    assert_settled(result)


async def test_job_level_hooks_and_bad_hooks() -> None:
    rec = Recorder()
    async with wf.Engine() as engine:
        plain = await engine.start(_flow(), {"a.inp": [1]})
        hooked = await engine.start(_flow(), {"a.inp": [2]}, hooks=[rec])
        await plain.wait(timeout_s=10)
        await hooked.wait(timeout_s=10)
    assert {p[3] for p in rec.points if p[0] == "enqueue"} == {2}
    with pytest.raises(TypeError, match=r"wf\.Hooks"):
        wf.Engine(hooks=[object()])  # type: ignore[list-item]


class _StaticEnds(wf.Hooks):
    ends: list[Any] = []

    @staticmethod
    def on_handler_end(job: Any, routine: str, item: Any, error: Any, duration_s: float) -> None:
        _StaticEnds.ends.append(item)


class _ClassEmits(wf.Hooks):
    emitted: list[Any] = []

    @classmethod
    async def on_emit(cls, point: wf.HookPoint) -> None:
        cls.emitted.append(point.item)


class _FatalStatic(wf.Hooks):
    fatal = True

    @staticmethod
    async def on_handler_start(point: wf.HookPoint) -> None:
        raise RuntimeError("no")


async def test_hooks_that_are_static_or_class_methods() -> None:
    """A point overridden by a staticmethod or a classmethod is a hook like any other:
    it runs at its point (it once made ``engine.start`` raise ``AttributeError``), and
    a fatal one fails the job with an error that names its class."""
    _StaticEnds.ends, _ClassEmits.emitted = [], []
    flow = wf.Flow("static-hooks").add("a", Forward())
    flow.output("a.out")
    async with wf.Engine() as engine:
        job = await engine.start(flow, {"a.inp": [1, 2]}, hooks=[_StaticEnds(), _ClassEmits()])
        result = await job.wait(timeout_s=5)
        assert result.status is wf.JobStatus.COMPLETED and result.outputs == {"a.out": [1, 2]}
        assert _StaticEnds.ends == [1, 2] and _ClassEmits.emitted == [1, 2]
        job = await engine.start(flow, {"a.inp": [1]}, hooks=[_FatalStatic()])
        failed = await job.wait(timeout_s=5)
    assert failed.status is wf.JobStatus.FAILED
    assert failed.error is not None and "_FatalStatic.on_handler_start" in failed.error
    assert_settled(failed)
