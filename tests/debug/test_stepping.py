"""A step always comes back: under load through capacity-1 slots, in every mode, and
with a ``blocked`` or ``idle`` stop (never a silent stall) where it cannot go on."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

import weirflow as wf
from tests.conftest import assert_settled
from tests.debug.flows import chain, joined
from weirflow.debug import DebugSession
from weirflow.debug.session import STOPS

#: a step that does not come back within this fails the test (it was a hang)
HIT_TIMEOUT_S = 10
CONNECTION = "a.out -> b.inp"
MODES = ("step", "step_into", "resume")


async def next_stop(session: DebugSession) -> dict[str, object] | None:
    """Where the job stopped next, or ``None`` once it finished."""
    try:
        return await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
    except wf.DebugError:
        if session.job.finished:
            return None
        raise


async def debug_under_load(
    items: int, mode: str, *, every: int, steps: int, thread: bool = True
) -> tuple[wf.JobResult, Counter[str], int]:
    """Run ``chain()`` on ``items`` inputs with a breakpoint on ``a.out -> b.inp`` that
    hits every ``every``-th item. At each hit: up to ``steps`` steps of ``mode`` (fewer
    when a step stops where it cannot go on), then resume. ``resume`` mode only resumes.
    Returns the result, the kinds of every stop, and the number of breakpoint hits."""
    kinds: Counter[str] = Counter()
    hits = 0
    async with wf.Engine() as engine:
        job = await engine.start(chain(thread=thread), {"a.inp": list(range(items))})
        session = DebugSession.attach(job)
        session.add_breakpoint("connection", CONNECTION, f"item % {every} == 0")
        while (where := await next_stop(session)) is not None:
            assert where["breakpoint"] is not None, where
            hits += 1
            kinds[str(where["kind"])] += 1
            if mode != "resume":
                for _ in range(steps):
                    getattr(session, mode)()
                    where = await next_stop(session)
                    assert where is not None, "the job cannot finish while it is stopped"
                    assert where["breakpoint"] is None, where  # the step's own stop
                    kinds[str(where["kind"])] += 1
                    if where["kind"] in STOPS:
                        break
            await session.resume()
        result = await job.wait(timeout_s=HIT_TIMEOUT_S)
    return result, kinds, hits


def check(result: wf.JobResult, items: int) -> None:
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert result.outputs["c.out"] == list(range(items))  # nothing lost, order kept
    assert result.dead_letters == []
    assert_settled(result)


@pytest.mark.parametrize("mode", MODES)
async def test_stepping_every_item_through_capacity_one_slots_always_comes_back(mode: str) -> None:
    """The reported hang: ``step()`` after a connection hit while the target slot is full
    stalled after a few hits, its emit waiting on a paused consumer."""
    items = 300
    result, kinds, hits = await debug_under_load(items, mode, every=1, steps=4)
    check(result, items)
    # every item crosses a -> b once: stopped there by the breakpoint or by a step
    assert kinds["connection"] == items
    if mode == "step":  # from there: a's next call, its emit, its crossing, its next call
        # ``blocked``: the released item found ``b.inp`` still full (``b`` had not taken
        # the previous item yet, a matter of thread timing); that step ends there
        assert set(kinds) <= {"connection", "routine", "event", "idle", "blocked"}
        assert kinds["routine"] + kinds["blocked"] >= hits
        assert kinds["event"] + kinds["blocked"] >= hits - 1
    elif mode == "step_into":  # the item arrives at b's slot, then at c's, then c emits it out
        assert hits == items and kinds["slot"] == 2 * items and kinds["idle"] == items
    else:
        assert hits == items


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
async def test_stepping_under_load_of_50000_items(mode: str) -> None:
    """50,000 items through capacity-1 slots: each breakpoint hit finds the pipeline full,
    with calls blocked at every slot; twenty steps from each hit (``resume``: a hit every
    tenth item). All routines are ``async`` here, for time: the fast test crosses threads."""
    items = 50_000
    every = 10 if mode == "resume" else 500
    result, kinds, hits = await debug_under_load(items, mode, every=every, steps=20, thread=False)
    check(result, items)
    assert hits == items // every
    assert sum(kinds.values()) > hits or mode == "resume"


async def test_a_step_into_a_slot_of_a_paused_routine_stops_blocked_naming_the_slot() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(chain(), keep_open=True)
        session = DebugSession.attach(job)
        session.add_breakpoint("connection", CONNECTION, "item == 1")
        job.pause_routine("b")
        for i in range(2):
            await job.send("a.inp", i, timeout_s=HIT_TIMEOUT_S)
        where = await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        assert (where["kind"], where["item"]) == ("connection", 1)
        assert job.queues()["b.inp"].size == 1  # item 0 waits there: b is paused
        session.step()
        where = await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        assert {k: where[k] for k in ("kind", "target", "slot", "routine", "item", "breakpoint")} == {
            "kind": "blocked",
            "target": "b.inp",
            "slot": "b.inp",
            "routine": "a",
            "item": None,
            "breakpoint": None,
        }
        assert where["reason"] == "routine 'b' is paused"
        assert job.status is wf.JobStatus.PAUSED
        with pytest.raises(wf.DebugError, match="no item is held"):
            session.set_item(5)
        with pytest.raises(wf.DebugError, match="no item is held"):
            session.drop_item("x")
        session.step()  # nothing changed: it stops there again, at once
        again = await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        assert (again["kind"], again["target"]) == ("blocked", "b.inp")
        job.resume_routine("b")
        await session.resume()
        await job.close_input()
        result = await job.wait(timeout_s=HIT_TIMEOUT_S)
    assert result.outputs["c.out"] == [0, 1]
    assert_settled(result)


async def test_a_step_into_a_join_that_waits_for_its_other_slot_stops_blocked() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(joined(), keep_open=True)
        session = DebugSession.attach(job)
        session.add_breakpoint("connection", "a.out -> j.x", "item == 'a1'")
        for item in ("a0", "a1"):
            await job.send("a.inp", item, timeout_s=HIT_TIMEOUT_S)
        await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        session.step()  # a's emit of a1 into j.x, where a0 waits for its partner
        where = await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        assert (where["kind"], where["target"], where["routine"]) == ("blocked", "j.x", "a")
        assert where["reason"] == "routine 'j' has no call ready"
        await session.resume()
        for item in ("b0", "b1"):
            await job.send("b.inp", item, timeout_s=HIT_TIMEOUT_S)
        await job.close_input()
        result = await job.wait(timeout_s=HIT_TIMEOUT_S)
    assert result.outputs["j.out"] == [["a0", "b0"], ["a1", "b1"]]
    assert_settled(result)


async def test_stepping_into_a_full_slot_from_where_the_item_arrives_stops_blocked() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(joined(), keep_open=True)
        session = DebugSession.attach(job)
        session.add_breakpoint("connection", "a.out -> j.x", "item == 'a1'")
        for item in ("a0", "a1"):
            await job.send("a.inp", item, timeout_s=HIT_TIMEOUT_S)
        await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        session.step_into()
        where = await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        assert (where["kind"], where["target"], where["item"]) == ("slot", "j.x", "a1")
        session.step_into()  # now j's: a1 goes into the full j.x, which j cannot take from
        where = await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        assert (where["kind"], where["target"], where["routine"]) == ("blocked", "j.x", "j")
        await job.cancel()


async def test_a_step_whose_routine_has_nothing_left_to_do_stops_idle() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(chain(), keep_open=True)
        session = DebugSession.attach(job)
        session.add_breakpoint("slot", "c.inp")
        await job.send("a.inp", "only", timeout_s=HIT_TIMEOUT_S)
        where = await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        assert (where["kind"], where["routine"]) == ("slot", "c")
        session.step_into()  # c emits only to the flow's outputs: nothing arrives at a slot
        where = await session.wait_for_hit(timeout_s=HIT_TIMEOUT_S)
        assert (where["kind"], where["target"], where["item"]) == ("idle", "c", None)
        assert job.status is wf.JobStatus.PAUSED
        await session.resume()
        await job.close_input()
        result = await job.wait(timeout_s=HIT_TIMEOUT_S)
    assert result.outputs["c.out"] == ["only"]


async def test_waiting_for_a_hit_ends_when_the_job_does() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(chain(), keep_open=True)
        session = DebugSession.attach(job)
        waiting = asyncio.create_task(session.wait_for_hit())
        await job.cancel()
        with pytest.raises(wf.DebugError, match="cancelled: nothing will be hit"):
            await asyncio.wait_for(waiting, HIT_TIMEOUT_S)
