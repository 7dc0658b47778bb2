"""Items given with ``send`` are never lost without a record: a pipeline's child killed
with SIGKILL at each point of an item's way (on its way to the child, waiting in its
slot, in its handler, after its handler emitted) — every item a ``send`` accepted is
either finished by the child or a dead letter of the pipeline, never both, never
neither. Real child processes; the kills are real ``SIGKILL``s."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

import weirflow as wf
from weirflow.errors import PipelineStateError

Make = Callable[..., AbstractAsyncContextManager[wf.Supervisor]]
SLOT = "w.inp"


def marks(log: Path, what: str) -> list[int]:
    if not log.exists():
        return []
    return [int(line.split(":")[1]) for line in log.read_text().split() if line.startswith(f"{what}:")]


def item(i: int, tmp_path: Path, kill: str | None = None) -> dict[str, Any]:
    return {"i": i, "log": str(tmp_path / "work.log"), "kill": kill, "once": str(tmp_path / "kill.once")}


async def send_all(sup: wf.Supervisor, pipeline_id: str, items: list[dict[str, Any]]) -> list[int]:
    """Send each item in turn; the ``i`` of those a send accepted (one the dead child or the
    stopped pipeline refused raises, and is not the supervisor's any more)."""
    accepted = []
    for it in items:
        try:
            await sup.send(pipeline_id, SLOT, it, timeout_s=10)
        except PipelineStateError:
            continue
        accepted.append(it["i"])
    return accepted


def check_every_item_is_accounted_for(
    sup: wf.Supervisor, pipeline_id: str, accepted: list[int], tmp_path: Path
) -> list[int]:
    """Every accepted item finished (``done``) xor dead-lettered ``child_crashed``, and no
    dead letter for an item no send accepted; returns the dead letters' ``i``."""
    done = marks(tmp_path / "work.log", "done")
    letters = sup.dead_letters(pipeline_id)
    dead = [d.item["i"] for d in letters]
    assert len(done) == len(set(done)) and len(dead) == len(set(dead)), (done, dead)
    assert not set(done) & set(dead), (done, dead)  # never both
    assert set(done) | set(dead) == set(accepted), (done, dead, accepted)  # never neither
    for d in letters:
        assert (d.slot, d.reason) == (SLOT, "child_crashed"), d
        assert d.error is not None and "SIGKILL" in d.error
        assert d.seq is not None
    info = sup.get(pipeline_id)
    assert info.dead_letters == len(dead) and info.unacked == 0
    return dead


def kill_grid() -> list[Any]:
    """(flow, when, burst): the handler ``async def`` (``work``) or plain ``def`` on a worker
    thread (``work_def``); the kill ``during`` the handler or ``after_emit``; the items sent
    one by one, or all queued first (sent while paused, then resumed: the handler takes
    them in a row). The plain run keeps one mode per handler kind, the rest is ``slow``."""
    grid = []
    for flow in ("work", "work_def"):
        for burst in (False, True):
            for when in ("during", "after_emit"):
                slow = burst != (flow == "work_def")
                extra = [pytest.mark.slow] if slow else []
                grid.append(
                    pytest.param(
                        flow,
                        when,
                        burst,
                        marks=extra,
                        id=f"{flow}-{when}-{'burst' if burst else 'one_by_one'}",
                    )
                )
    return grid


@pytest.mark.parametrize(("flow", "when", "burst"), kill_grid())
async def test_a_child_killed_in_a_handler_leaves_every_sent_item_finished_or_dead_lettered(
    supervisor: Make, tmp_path: Path, flow: str, when: str, burst: bool
) -> None:
    async with supervisor() as sup:
        p = await sup.start(flow, restart="temporary")  # one life: its end is final
        items = [item(i, tmp_path, kill=when if i == 3 else None) for i in range(8)]
        if burst:
            await sup.pause(p.id)
        accepted = await send_all(sup, p.id, items)
        if burst:
            assert accepted == list(range(8))
            await sup.resume(p.id)
        await sup.wait_state(p.id, "stopped", timeout_s=30)
        dead = check_every_item_is_accounted_for(sup, p.id, accepted, tmp_path)
        # every item whose handler returned before the kill is acknowledged, not dead-lettered
        assert 3 in dead and {0, 1, 2} <= set(marks(tmp_path / "work.log", "done"))
        outputs = await sup.results(p.id, max_items=100)
        # the victim's output got out before its kill: the dead letter says its child
        # crashed before it was finished, which is what a crash in a handler means
        assert (3 in outputs) == (when == "after_emit")
        assert set(outputs) - {3} == set(marks(tmp_path / "work.log", "done"))


async def test_items_waiting_in_their_slot_are_dead_lettered_when_the_child_is_killed(
    supervisor: Make, tmp_path: Path
) -> None:
    async with supervisor() as sup:
        p = await sup.start("work", restart="temporary")
        await sup.pause(p.id)  # the items wait in the slot, no handler runs
        accepted = await send_all(sup, p.id, [item(i, tmp_path) for i in range(5)])
        assert accepted == list(range(5)) and sup.get(p.id).unacked == 5
        os.kill(p.pid or -1, signal.SIGKILL)
        await sup.wait_state(p.id, "stopped", timeout_s=30)
        dead = check_every_item_is_accounted_for(sup, p.id, accepted, tmp_path)
        assert dead == list(range(5))  # oldest first
        assert [d.seq for d in sup.dead_letters(p.id)] == sorted(d.seq or 0 for d in sup.dead_letters(p.id))


async def test_items_on_their_way_to_a_killed_child_are_dead_lettered_or_refused(
    supervisor: Make, tmp_path: Path
) -> None:
    async with supervisor() as sup:
        p = await sup.start("work", restart="temporary")
        await sup.pause(p.id)
        # many sends at once: the kill lands while some are on the pipe, some answered
        sends = [
            asyncio.ensure_future(sup.send(p.id, SLOT, item(i, tmp_path), timeout_s=10)) for i in range(50)
        ]
        await asyncio.wait(sends, return_when=asyncio.FIRST_COMPLETED)
        os.kill(p.pid or -1, signal.SIGKILL)
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
        accepted = [i for i, o in enumerate(outcomes) if o is None]
        refused = [o for o in outcomes if o is not None]
        assert all(isinstance(o, PipelineStateError) for o in refused), refused
        await sup.wait_state(p.id, "stopped", timeout_s=30)
        dead = check_every_item_is_accounted_for(sup, p.id, accepted, tmp_path)
        assert dead and not marks(tmp_path / "work.log", "done")


async def test_a_restarted_pipeline_keeps_its_dead_letters_and_takes_new_items(
    supervisor: Make, tmp_path: Path
) -> None:
    async with supervisor(warm=1) as sup:
        p = await sup.start("work")  # permanent: restarted after the crash (from the warm spare)
        restarting = asyncio.ensure_future(sup.wait_state(p.id, "restarting", timeout_s=30))
        await sup.send(p.id, SLOT, item(0, tmp_path, kill="during"))
        await restarting
        await sup.wait_state(p.id, "running", timeout_s=30)
        await sup.send(p.id, SLOT, item(1, tmp_path))
        assert await sup.results(p.id, wait_s=10) == [1]
        (letter,) = sup.dead_letters(p.id)
        assert (letter.item["i"], letter.reason, letter.seq) == (0, "child_crashed", 1)
        info = sup.get(p.id)
        assert (info.restarts, info.dead_letters) == (1, 1)


async def test_at_most_unacked_capacity_sent_items_wait_to_be_finished(
    supervisor: Make, tmp_path: Path
) -> None:
    async with supervisor(unacked_capacity=3) as sup:
        p = await sup.start("work")
        await sup.pause(p.id)
        assert await send_all(sup, p.id, [item(i, tmp_path) for i in range(3)]) == [0, 1, 2]
        with pytest.raises(PipelineStateError) as refused:
            await sup.send(p.id, SLOT, item(3, tmp_path), timeout_s=0.2)
        assert refused.value.state == "full"
        assert sup.get(p.id).unacked == 3
        waiting = asyncio.ensure_future(sup.send(p.id, SLOT, item(3, tmp_path), timeout_s=30))
        await sup.resume(p.id)  # the child finishes items: their places are free again
        await waiting
        got: list[int] = []
        while len(got) < 4:
            got += await sup.results(p.id, wait_s=10)
        assert got == [0, 1, 2, 3]


async def test_the_first_send_is_acknowledged_even_while_its_routine_runs_calls_in_a_row(
    supervisor: Make, tmp_path: Path
) -> None:
    # the acknowledgement hook is attached at the first send, while "w" is in the middle of
    # a run of calls on the runner's fast path (blocked in an emit: the results buffer has
    # room for one): the sent item must meet the hook, or it is finished unacknowledged
    async with supervisor(results_capacity=1) as sup:
        p = await sup.start("work", {"w.inp": [item(i, tmp_path) for i in range(3)]}, restart="temporary")
        assert await sup.results(p.id, wait_s=10) == [0]
        await sup.send(p.id, SLOT, item(3, tmp_path))
        got: list[int] = []
        while len(got) < 3:
            got += await sup.results(p.id, wait_s=10)
        assert got == [1, 2, 3]
        info = await sup.stop(p.id)  # drains: every acknowledgement is read before the exit
        assert (info.state, info.unacked, info.dead_letters) == ("stopped", 0, 0), info
        assert sup.dead_letters(p.id) == []
