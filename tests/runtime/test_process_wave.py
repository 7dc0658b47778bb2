"""Process waves (``runtime/process_wave.py``): a chain of ``concurrency = 1`` process routines
run whole by each request, several requests in flight on different children, each routine's
turn (and state) passed from one batch to the next. Real processes, ``kill -9`` included."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import weirflow as wf
from tests.conftest import assert_settled
from tests.runtime.process_flows import FailOn, InOrder, ProcessWork, spin
from tests.runtime.test_process import chain, run

N = 600


def _forwarders(k: int) -> list[wf.Routine]:
    return [FailOn(victim=-1) for _ in range(k)]


async def test_a_chain_of_five_runs_whole_in_each_request_in_order_one_call_at_a_time(tmp_path: Path) -> None:
    """Two children work on the same chain at once, on different batches: no item waits in
    a slot between the routines (cut into segments, as before, the items waited in the slots
    where a segment starts), each routine sees its items in order, one call at a time
    (checked across processes with an exclusive lock held during each call), its state
    passed from batch to batch, and the results come out in order."""
    locks = [str(tmp_path / f"lock{i}") for i in range(5)]
    procs = chain(*(InOrder(rounds=300, lock_path=path) for path in locks))
    result, job = await run(procs, {"r0.inp": list(range(N))})
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert result.outputs == {"c.seen": [list(range(N))]}
    for i in range(5):
        state = job.routine_state(f"r{i}")
        assert state["n"] == N and result.stats.routines[f"r{i}"].calls == N
        if i:
            s = result.stats.slots[f"r{i}.inp"]
            assert (s.enqueued, s.processed, s.high_water) == (N, N, 0), s
    # the same routine ran in both children, its calls still in order (its state says so)
    assert any(len(job.routine_state(f"r{i}")["pids"]) == 2 for i in range(5))
    assert_settled(result)


async def test_a_later_routine_that_raises_in_a_wave_fails_the_job_naming_it() -> None:
    flow = chain(*_forwarders(2), FailOn(victim=450), *_forwarders(2))
    result, _ = await run(flow, {"r0.inp": list(range(N))})
    assert result.status is wf.JobStatus.FAILED
    assert result.error == "routine 'r2' failed: ValueError: bad 450"
    assert [(d.item, d.reason) for d in result.dead_letters if d.slot == "r2.inp"] == [
        (450, "handler_failed")
    ]
    assert result.stats.routines["r2"].failures == 1
    s = result.stats.slots["r0.inp"]  # every input is processed or a dead letter
    assert s.enqueued == N and s.processed + s.dead_lettered == N
    assert_settled(result)


async def test_a_child_killed_in_a_later_routine_of_a_wave_fails_the_job_and_loses_no_input() -> None:
    flow = chain(*_forwarders(2), FailOn(victim=450, kill=True), *_forwarders(2))
    result, _ = await run(flow, {"r0.inp": list(range(N))})
    assert result.status is wf.JobStatus.FAILED
    assert (result.error or "").startswith("routine 'r2' failed: WorkerDiedError:"), result.error
    assert "signal 9" in (result.error or "")
    # the item it died on is that routine's dead letter (it came back with r1's turn)
    [letter] = [d for d in result.dead_letters if d.slot == "r2.inp"]
    assert (letter.item, letter.reason) == (450, "handler_failed")
    assert "WorkerDiedError" in (letter.error or ""), letter
    s = result.stats.slots["r0.inp"]
    assert s.enqueued == N and s.processed + s.dead_lettered == N
    # the batch the child died with: its first routine's items are dead letters
    assert 450 in {d.item for d in result.dead_letters if d.slot == "r0.inp"}
    assert_settled(result)


async def test_a_child_killed_in_the_first_routine_of_a_wave_makes_its_item_the_dead_letter() -> None:
    flow = chain(FailOn(victim=450, kill=True), *_forwarders(3))
    result, _ = await run(flow, {"r0.inp": list(range(N))})
    assert result.status is wf.JobStatus.FAILED
    assert (result.error or "").startswith("routine 'r0' failed: WorkerDiedError:"), result.error
    [letter] = [d for d in result.dead_letters if d.reason == "handler_failed"]
    assert (letter.slot, letter.item) == ("r0.inp", 450)
    s = result.stats.slots["r0.inp"]
    assert s.enqueued == N and s.processed + s.dead_lettered == N
    assert_settled(result)


async def test_pause_waits_for_the_batches_of_a_wave_and_resume_goes_on() -> None:
    arrived = asyncio.Event()

    class First(wf.Hooks):
        def watches(self, point: str, target: str) -> bool:
            return point == "on_enqueue" and target == "c.inp"

        async def on_enqueue(self, point: wf.HookPoint) -> None:
            arrived.set()

    flow = chain(*(ProcessWork(rounds=1500) for _ in range(4)))
    async with wf.Engine(max_processes=2, hooks=[First()]) as e:
        job = await e.start(flow, {"r0.inp": list(range(N))})
        await asyncio.wait_for(arrived.wait(), 60)
        point = await job.pause(timeout_s=60)
        for path, s in point.queues.items():
            assert s.in_flight == 0, (path, s)
            assert s.enqueued == s.processed + s.size + s.dead_lettered, (path, s)
        done = point.queues["r3.inp"].processed
        assert 0 < done < N
        assert job.queues()["r3.inp"].processed == done  # nothing ran while paused
        await job.resume()
        result = await job.wait(timeout_s=60)
    assert result.outputs["c.seen"] == [[spin(spin(spin(spin(n, 1500), 1500), 1500), 1500) for n in range(N)]]
    assert_settled(result)


class SmallSink(wf.Routine):
    """A slow consumer with room for one item: the wave's emits wait for room in its slot."""

    inp = wf.Slot(capacity=1)
    seen = wf.Event()

    @inp.handler
    async def take(self, item: Any, ctx: wf.Context) -> None:
        ctx.state.setdefault("seen", []).append(item)
        await asyncio.sleep(0.001)  # (a slow consumer's work, not a wait for state)

    async def on_end(self, ctx: wf.Context) -> None:
        await ctx.emit(self.seen, ctx.state.get("seen", []))


@pytest.mark.slow
@pytest.mark.parametrize("hooked", [False, True], ids=["direct", "through-the-loop"])
async def test_pause_reaches_its_safe_point_while_the_waves_emits_wait_for_room(hooked: bool) -> None:
    """A wave whose last routine's emits wait for room in a full slot holds several calls
    of every routine of the chain (its batches in flight): while they wait there they are
    at a safe point, so a pause returns (before, it waited for ever: ``JobTimeoutError``,
    "8 call(s) still running") and resume finishes the job with every item, in order. The
    emits go straight into the slot, or through the loop where a hook sees them."""
    arrived = asyncio.Event()

    class First(wf.Hooks):
        def watches(self, point: str, target: str) -> bool:
            return point == "on_enqueue" and target == "s.inp"

        async def on_enqueue(self, point: wf.HookPoint) -> None:
            pass

    class Sink(SmallSink):
        @SmallSink.inp.handler
        async def take(self, item: Any, ctx: wf.Context) -> None:
            arrived.set()
            await super().take(item, ctx)

    n = 400
    flow = wf.Flow("small")
    for i in range(3):
        flow.add(f"r{i}", ProcessWork(rounds=50))
    flow.add("s", Sink())
    flow.connect("r0.out", "r1.inp")
    flow.connect("r1.out", "r2.inp")
    flow.connect("r2.out", "s.inp")
    flow.output("s.seen")
    async with wf.Engine(max_processes=2, hooks=[First()] if hooked else []) as e:
        job = await e.start(flow, {"r0.inp": list(range(n))})
        await asyncio.wait_for(arrived.wait(), 60)
        point = await job.pause(timeout_s=30)
        taken = point.queues["s.inp"].processed
        assert taken < n
        assert job.queues()["s.inp"].processed == taken  # nothing ran while paused
        await job.resume()
        result = await job.wait(timeout_s=60)
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert result.outputs == {"s.seen": [[spin(spin(spin(k, 50), 50), 50) for k in range(n)]]}
    assert_settled(result)


async def test_the_engines_next_jobs_run_after_a_wave_failed(tmp_path: Path) -> None:
    """A job whose wave fails kills the children still running its batches; the engine's
    next jobs get live children (before, a child that still looked alive an instant after
    its kill went back to the pool as idle and the next job failed on it: "WorkerDiedError:
    ... killed by signal 9"), and their waves still run each routine's calls in order, one
    at a time, its state passed from batch to batch."""
    locks = [str(tmp_path / f"lock{i}") for i in range(3)]
    async with wf.Engine(max_processes=2) as e:
        flow = chain(*_forwarders(2), FailOn(victim=450), *_forwarders(2))
        failed = await (await e.start(flow, {"r0.inp": list(range(N))})).wait(timeout_s=60)
        assert failed.status is wf.JobStatus.FAILED
        assert_settled(failed)
        for _ in range(2):
            flow = chain(*(InOrder(rounds=300, lock_path=p) for p in locks))
            job = await e.start(flow, {"r0.inp": list(range(N))})
            result = await job.wait(timeout_s=60)
            assert result.status is wf.JobStatus.COMPLETED, result.error
            assert result.outputs == {"c.seen": [list(range(N))]}
            for i in range(3):
                assert job.routine_state(f"r{i}")["n"] == N
            assert_settled(result)
