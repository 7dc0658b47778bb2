"""Debug sessions: breakpoints at four places, holding, inspecting, editing, stepping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import weirflow as wf
from tests.conftest import assert_balanced, assert_settled
from weirflow.debug import DebugSession


class Double(wf.Routine):
    inp = wf.Slot(capacity=4)
    out = wf.Event()

    @inp.handler
    async def double(self, n: int, ctx: wf.Context) -> None:
        ctx.state["count"] = ctx.state.get("count", 0) + 1
        await ctx.emit(self.out, {"n": n * 2})


class Sink(wf.Routine):
    inp = wf.Slot(capacity=4)
    seen = wf.Event()

    @inp.handler
    def take(self, item: Any, ctx: wf.Context) -> None:
        ctx.state.setdefault("items", []).append(item)

    async def on_end(self, ctx: wf.Context) -> None:
        await ctx.emit(self.seen, ctx.state.get("items", []))


def flow() -> wf.Flow:
    f = wf.Flow("dbg")
    f.add("double", Double()).add("sink", Sink())
    f.connect("double.out", "sink.inp")
    f.output("sink.seen")
    return f


async def start(engine: wf.Engine, items: list[int], **kw: Any) -> tuple[wf.Job, DebugSession]:
    job = await engine.start(flow(), keep_open=True, **kw)
    session = DebugSession.attach(job)
    return job, session


async def feed_and_finish(job: wf.Job, items: list[int]) -> None:
    for i in items:
        await job.send("double.inp", i, timeout_s=10)


@pytest.mark.parametrize(
    ("kind", "target", "where"),
    [
        ("routine", "sink", {"kind": "routine", "target": "sink", "routine": "sink", "slot": "sink.inp"}),
        ("slot", "sink.inp", {"kind": "slot", "target": "sink.inp", "routine": "sink", "slot": "sink.inp"}),
        ("event", "double.out", {"kind": "event", "target": "double.out", "routine": "double"}),
        (
            "connection",
            "double.out ->  sink.inp",
            {"kind": "connection", "target": "double.out -> sink.inp", "routine": "double"},
        ),
    ],
)
async def test_each_kind_of_breakpoint_holds_the_item_in_place(
    kind: str, target: str, where: dict[str, Any]
) -> None:
    async with wf.Engine() as engine:
        job, session = await start(engine, [])
        bp = session.add_breakpoint(kind, target, "item.n == 6")
        await feed_and_finish(job, [1, 2, 3, 4])
        loc = await session.wait_for_hit(timeout_s=10)
        assert job.status is wf.JobStatus.PAUSED
        assert job.pause_reason == f"breakpoint:{bp.id}"
        assert loc["breakpoint"] == bp.id
        assert loc["item"] == {"n": 6}
        assert {k: loc[k] for k in where} == where
        assert bp.hit_count == 1
        assert_balanced(job.queues())
        report = await session.resume()
        assert isinstance(report, wf.ResumeReport)
        await job.close_input()
        result = await job.wait(timeout_s=10)
    assert result.outputs["sink.seen"] == [[{"n": 2}, {"n": 4}, {"n": 6}, {"n": 8}]]
    assert bp.hit_count == 1
    assert_settled(result)


async def test_inspect_edit_drop_and_state() -> None:
    async with wf.Engine() as engine:
        job, session = await start(engine, [])
        session.add_breakpoint("routine", "sink", "item.n >= 4")
        await feed_and_finish(job, [1, 2, 3])
        await session.wait_for_hit(timeout_s=10)
        view = session.inspect(limit=5)
        assert view["paused"]
        assert view["location"]["item"] == {"n": 4}
        assert view["state"] == {"items": [{"n": 2}]}
        assert view["queues"]["sink.inp"]["in_flight"] == 1
        assert view["queued_items"]["sink.inp"] == [{"n": 6}]
        assert session.evaluate("item.n * 10 + size(state.items)") == 41
        session.set_item({"n": 40})
        session.set_state("note", "edited")
        await session.resume()
        await session.wait_for_hit(timeout_s=10)  # n=6 also matches
        assert session.location is not None
        assert session.location["item"] == {"n": 6}
        session.drop_item("not wanted")
        assert session.location is None
        assert job.status is wf.JobStatus.PAUSED  # dropping does not resume
        await session.resume()
        await job.close_input()
        result = await job.wait(timeout_s=10)
        state = job.routine_state("sink")
    assert result.outputs["sink.seen"] == [[{"n": 2}, {"n": 40}]]
    assert state["note"] == "edited"
    (letter,) = result.dead_letters
    assert (letter.slot, letter.item, letter.reason) == ("sink.inp", {"n": 6}, "debugger:not wanted")
    assert_settled(result)


async def test_step_stops_at_the_next_point_of_the_same_routine() -> None:
    async with wf.Engine() as engine:
        job, session = await start(engine, [])
        session.add_breakpoint("routine", "double", once=True)
        await feed_and_finish(job, [5])
        loc = await session.wait_for_hit(timeout_s=10)
        assert (loc["kind"], loc["item"]) == ("routine", 5)
        assert session.breakpoints == {}  # once: removed after its first hit
        session.step()
        loc = await session.wait_for_hit(timeout_s=10)
        # the handler ran and is now emitting: stopped at its emit, job still paused
        assert (loc["kind"], loc["target"], loc["item"]) == ("event", "double.out", {"n": 10})
        assert loc["breakpoint"] is None
        assert job.status is wf.JobStatus.PAUSED
        session.step_into()
        loc = await session.wait_for_hit(timeout_s=10)
        assert (loc["kind"], loc["target"], loc["item"]) == ("slot", "sink.inp", {"n": 10})
        assert job.queues()["sink.inp"].enqueued == 0  # held before it is queued
        await session.resume()
        await job.close_input()
        result = await job.wait(timeout_s=10)
    assert result.outputs["sink.seen"] == [[{"n": 10}]]


async def test_routine_scope_stops_only_that_routine_until_backpressure() -> None:
    async with wf.Engine() as engine:
        job, session = await start(engine, [])
        session.add_breakpoint("routine", "sink", scope="routine")
        await feed_and_finish(job, [0])
        await session.wait_for_hit(timeout_s=10)
        assert job.status is wf.JobStatus.RUNNING  # only sink is stopped
        # double keeps running until sink's slot (capacity 4) is full and its emit waits
        for i in range(1, 6):
            await job.send("double.inp", i, timeout_s=10)
        snap = job.queues()
        assert snap["sink.inp"].size == 4
        assert snap["sink.inp"].state == "full"
        assert snap["sink.inp"].paused
        assert_balanced(snap)
        report = await session.resume()
        assert any("sink.inp" in w for w in report.warnings)
        session.detach()
        await job.close_input()
        result = await job.wait(timeout_s=10)
    assert len(result.outputs["sink.seen"][0]) == 6
    assert_settled(result)


async def test_manual_pause_reason_and_breakpoint_reason() -> None:
    statuses: list[tuple[str, str | None]] = []

    class Watch(wf.Hooks):
        def on_job_status(self, job: wf.Job, status: wf.JobStatus, reason: str | None) -> None:
            statuses.append((status.value, reason))

    async with wf.Engine(hooks=[Watch()]) as engine:
        job, session = await start(engine, [])
        await job.pause()
        assert job.pause_reason == "manual"
        bp = session.add_breakpoint("event", "double.out")
        await job.resume()
        await feed_and_finish(job, [1])
        await session.wait_for_hit(timeout_s=10)
        await session.resume()
        await job.close_input()
        await job.wait(timeout_s=10)
    assert ("paused", "manual") in statuses
    assert ("paused", f"breakpoint:{bp.id}") in statuses


async def test_batch_add_and_remove_report_partial_failures() -> None:
    async with wf.Engine() as engine:
        job, session = await start(engine, [])
        created, failed = session.add_breakpoints(
            [
                {"kind": "routine", "target": "sink"},
                {"kind": "slot", "target": "nope.inp"},
                {"kind": "event", "target": "double.out", "condition": "item.n >"},
                {"kind": "connection", "target": "double.out -> sink.inp", "scope": "everything"},
                {"kind": "walrus", "target": "x"},
                {"kind": "routine", "target": "double", "colour": "red"},
            ]
        )
        assert [bp.target for bp in created] == ["sink"]
        assert [i for i, _ in failed] == [1, 2, 3, 4, 5]
        assert "no slot 'nope.inp'" in failed[0][1]
        assert "line 1, column 9" in failed[1][1]
        removed, missing = session.remove_breakpoints([created[0].id, "bp999"])
        assert removed == [created[0].id]
        assert missing == [(1, "no breakpoint 'bp999'")]
        await job.cancel()


async def test_disabled_breakpoints_do_not_hit() -> None:
    async with wf.Engine() as engine:
        job, session = await start(engine, [])
        bp = session.add_breakpoint("routine", "sink")
        session.update_breakpoint(bp.id, enabled=False)
        await feed_and_finish(job, [1, 2])
        await job.close_input()
        result = await job.wait(timeout_s=10)
    assert bp.hit_count == 0
    assert result.status is wf.JobStatus.COMPLETED


async def test_nothing_held_is_a_debug_error() -> None:
    async with wf.Engine() as engine:
        job, session = await start(engine, [])
        for action in (session.step, session.step_into, lambda: session.drop_item("x")):
            with pytest.raises(wf.DebugError, match="nothing is held"):
                action()
        with pytest.raises(wf.DebugError, match=r"condition 'item\.missing' failed"):
            session.evaluate("item.missing")
        assert session.evaluate("1 + 2") == 3
        await job.cancel()


async def test_a_send_held_at_a_breakpoint_when_the_job_ends_is_released_and_dead_lettered_once() -> None:
    """Found in review: the hold outlived the job, so the send hung for ever, or a later drop
    made a second dead letter and the send returned as if accepted."""

    class Sink(wf.Routine):
        x = wf.Slot()

        @x.handler
        async def h(self, item: object, ctx: wf.Context) -> None: ...

    flow = wf.Flow("held")
    flow.add("s", Sink())
    async with wf.Engine() as engine:
        job = await engine.start(flow, {}, keep_open=True)
        session = DebugSession.attach(job)
        session.add_breakpoint("slot", "s.x")
        sending = asyncio.create_task(job.send("s.x", "ITEM"))
        await session.wait_for_hit(timeout_s=10)
        result = await job.cancel()
        with pytest.raises(wf.JobFinishedError, match="dead-lettered"):
            await asyncio.wait_for(sending, 10)
        assert session.held == []
    assert [(d.item, d.reason) for d in result.dead_letters] == [("ITEM", "job_cancelled")]
    assert job.dead_letter_count == 1
