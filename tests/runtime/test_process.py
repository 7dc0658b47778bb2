"""``executor = "process"``: handlers in child processes, with real processes and kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

import weirflow as wf
from tests.conftest import assert_settled
from tests.runtime.flows import Collect
from tests.runtime.process_flows import (
    Count,
    EmitLock,
    FailOn,
    Fails,
    KillOnce,
    Meet,
    ProcessWork,
    RetrySquare,
    Slow,
    SlowLetters,
    Square,
    Tell,
    WideWork,
    Work,
    spin,
)
from weirflow.runtime import LogJournal
from weirflow.runtime.process import ProcessPool


def chain(*routines: wf.Routine) -> wf.Flow:
    flow = wf.Flow("proc")
    names = [f"r{i}" for i in range(len(routines))]
    for name, r in zip(names, routines, strict=True):
        flow.add(name, r)
    flow.add("c", Collect())
    for a, b in zip(names, [*names[1:], "c"], strict=True):
        flow.connect(f"{a}.out", f"{b}.inp")
    flow.output("c.seen")
    return flow


async def run(
    flow: wf.Flow, inputs: dict[str, Any], *, processes: int = 2, **engine: Any
) -> tuple[wf.JobResult, wf.Job]:
    async with wf.Engine(max_processes=processes, **engine) as e:
        job = await e.start(flow, inputs)
        return await job.wait(timeout_s=60), job


async def test_results_equal_the_in_process_run_and_the_work_happens_in_children() -> None:
    items = list(range(300))
    here, _ = await run(chain(Work(rounds=50), Work(rounds=50)), {"r0.inp": items})
    there, job = await run(chain(ProcessWork(rounds=50), Square()), {"r0.inp": items})
    assert here.outputs["c.seen"] == [[spin(spin(n, 50), 50) for n in items]]
    assert there.outputs["c.seen"] == [[spin(n, 50) ** 2 for n in items]]
    state = job.routine_state("r1")
    assert state["seen"] == 300  # state changes come back from the child
    assert state["pid"] != os.getpid()
    assert_settled(there)


async def test_a_child_killed_mid_call_is_a_failed_attempt_and_is_replaced() -> None:
    result, _ = await run(chain(KillOnce(victim=3)), {"r0.inp": list(range(8))})
    assert result.status is wf.JobStatus.COMPLETED
    # item 3's first attempt died with its process; the retry (attempt 2) ran in a new one
    assert result.outputs["c.seen"] == [[(n, 2 if n == 3 else 1) for n in range(8)]]
    assert result.stats.routines["r0"].failures == 1
    assert_settled(result)

    result, _ = await run(chain(KillOnce(victim=3, always=True)), {"r0.inp": list(range(8))})
    assert [n for n, _ in result.outputs["c.seen"][0]] == [0, 1, 2, 4, 5, 6, 7]
    [letter] = result.dead_letters
    assert (letter.item, letter.reason) == (3, "handler_failed")
    assert "WorkerDiedError" in (letter.error or "") and "signal 9" in (letter.error or "")
    assert_settled(result)


async def test_kill_9_from_outside_while_the_child_is_inside_a_call(tmp_path: Path) -> None:
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    opened: list[Any] = []

    def read_pid() -> int:
        f = open(fifo)  # noqa: SIM115 - kept open: the handler's later writes must not block
        opened.append(f)
        return int(f.readline())

    async with wf.Engine(max_processes=1) as e:
        job = await e.start(chain(Tell(fifo=str(fifo))), {"r0.inp": [1, 2, 3]})
        pid = await asyncio.wait_for(asyncio.to_thread(read_pid), 30)  # the child is in the call
        os.kill(pid, signal.SIGKILL)
        result = await job.wait(timeout_s=60)
    for f in opened:
        f.close()
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert [n for n, _ in result.outputs["c.seen"][0]] == [1, 2, 3]
    assert dict(result.outputs["c.seen"][0])[1] == 2  # its first attempt died
    assert_settled(result)


class Unpicklable:
    def __init__(self, n: int) -> None:
        self.n = n
        self.lock = threading.Lock()


async def test_an_unpicklable_item_is_a_dead_letter_with_the_reason() -> None:
    items: list[Any] = [1, Unpicklable(2), 3]
    result, _ = await run(chain(Fails()), {"r0.inp": items})
    assert result.outputs["c.seen"] == [[1, 3]]
    [letter] = result.dead_letters
    assert letter.reason == "unpicklable" and letter.item is items[1]
    assert "lock" in (letter.error or "")
    assert_settled(result)


async def test_an_unpicklable_routine_or_an_async_handler_is_a_flow_error() -> None:
    class Local(wf.Routine):
        executor = "process"
        inp = wf.Slot()

        @inp.handler
        def take(self, item: Any) -> None:
            pass

    flow = wf.Flow("bad")
    flow.add("l", Local())
    with pytest.raises(wf.FlowError, match=r"routine 'l' has executor = 'process' but cannot be pickled"):
        flow.validate()

    with pytest.raises(wf.FlowError, match="needs plain def handlers"):

        class Async(wf.Routine):
            executor = "process"
            inp = wf.Slot()

            @inp.handler
            async def take(self, item: Any) -> None:
                pass

    with pytest.raises(wf.FlowError, match="executor must be 'thread' or 'process'"):

        class Odd(wf.Routine):
            executor = "fork"  # type: ignore[assignment]


async def test_error_policies_and_accounting_across_the_boundary() -> None:
    result, _ = await run(chain(Fails()), {"r0.inp": list(range(30))})
    assert result.outputs["c.seen"] == [[n for n in range(30) if n % 5]]
    assert sorted(d.item for d in result.dead_letters) == [0, 5, 10, 15, 20, 25]
    assert {d.error for d in result.dead_letters} == {f"ValueError: bad {n}" for n in range(0, 30, 5)}
    assert_settled(result)


async def test_backpressure_across_the_boundary() -> None:
    """A process routine feeding a capacity-2 process routine that its requests do not take
    along (a dead-letter policy): the producer waits at the full slot (no item dropped,
    the slot never over capacity). Taken along (``Slow``: the default policy), the items
    never wait in that slot at all."""
    result, _ = await run(chain(Square(), SlowLetters()), {"r0.inp": list(range(200))})
    assert result.outputs["c.seen"] == [[n * n for n in range(200)]]
    s = result.stats.slots["r1.inp"]
    assert s.high_water <= 2 and s.blocked_s > 0
    assert_settled(result)

    result, _ = await run(chain(Square(), Slow()), {"r0.inp": list(range(200))}, processes=1)
    assert result.outputs["c.seen"] == [[n * n for n in range(200)]]
    s = result.stats.slots["r1.inp"]
    assert s.high_water == 0 and (s.enqueued, s.processed) == (200, 200)
    assert_settled(result)


async def test_a_process_chain_runs_in_one_request_with_every_slot_counted() -> None:
    """Consecutive process routines run inside one child request (``Chain``): the results
    equal the in-process run's, each routine counts its calls, and each slot between them
    counts every item as enqueued and processed although none waited there (before, every
    item went back to the parent between them and queued in each slot)."""
    items = list(range(300))
    procs = chain(ProcessWork(rounds=50), ProcessWork(rounds=50), ProcessWork(rounds=50))
    here = chain(Work(rounds=50), Work(rounds=50), Work(rounds=50))
    result, _ = await run(procs, {"r0.inp": items}, processes=1)
    expected, _ = await run(here, {"r0.inp": items})
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert result.outputs == expected.outputs
    # one child: the whole chain is one segment, every request takes r1 and r2 along
    for name in ("r1", "r2"):
        s = result.stats.slots[f"{name}.inp"]
        assert (s.enqueued, s.processed, s.high_water) == (300, 300, 0), s
        assert result.stats.routines[name].calls == 300
    assert_settled(result)


async def test_a_chain_of_five_is_cut_so_that_no_segment_holds_more_than_its_share() -> None:
    """5 routines of concurrency 1 on 2 children: cut by count into 2 segments (3 + 2),
    one request in flight each, the 3-routine segment held the chain to 5/3 of one core.
    Now the chain is cut by measured cost (2 + 2 + 1 for equal costs: the cut itself is
    checked on fixed costs below), so some routines are taken along and some send their
    own requests, and the cut may move as the costs are measured again; whatever the cut,
    the items go in order through every routine and the results equal the in-process
    run's, in order."""
    items = list(range(400))
    procs = chain(*(ProcessWork(rounds=2000) for _ in range(5)))
    here = chain(*(Work(rounds=2000) for _ in range(5)))
    result, _ = await run(procs, {"r0.inp": items})
    expected, _ = await run(here, {"r0.inp": items})
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert result.outputs == expected.outputs
    # (how many segments the run used depends on the costs measured while it ran: a
    # machine under load can make 2 or 4 the better cut, so it is not asserted here)
    later = [result.stats.slots[f"r{i}.inp"] for i in range(1, 5)]
    for s in later:
        assert (s.enqueued, s.processed) == (400, 400), s
    assert_settled(result)


class _Stage:
    """What ``_cut`` reads of a process routine: concurrency and measured costs."""

    def __init__(self, cpu_us: float, *, concurrency: int = 1, hop_us: float = 0.0) -> None:
        self.concurrency = concurrency
        self.cpu_calls, self.cpu_s = 100, cpu_us * 1e-6 * 100
        self.hop_items, self.hop_s = 100, hop_us * 1e-6 * 100
        self.span = -1
        self.cut_at_calls = 0


def _segments(costs: list[float], processes: int = 2, **kw: Any) -> list[int]:
    from weirflow.runtime.process_chain import cut as _cut

    stages = [_Stage(c, **kw) for c in costs]
    _cut(stages, processes)  # type: ignore[arg-type]
    sizes, i = [], 0
    while i < len(stages):
        sizes.append(stages[i].span + 1)
        i += stages[i].span + 1
    return sizes


def test_a_chain_is_cut_by_what_its_stages_cost() -> None:
    # equal stages, concurrency 1, 2 children: no segment above half the work
    assert sorted(_segments([50] * 5)) == [1, 2, 2]
    assert _segments([50] * 4) == [2, 2]
    # one heavy stage goes alone, the rest together (by count: 4+1 | 1+1+1 held it to 5/8)
    assert _segments([200, 50, 50, 50, 50]) == [1, 4]
    # concurrency 2: two requests in flight per segment, the whole chain in each
    assert _segments([50] * 5, concurrency=2) == [5]
    # handlers cheaper than a hop through the parent: one segment
    assert _segments([2] * 3, hop_us=10) == [3]
    # one child: one segment
    assert _segments([50] * 5, processes=1) == [5]


async def test_a_process_chain_of_wide_routines_is_taken_along_whole() -> None:
    """With ``concurrency = 2`` on 2 children, each request runs the whole chain."""
    flow = chain(WideWork(rounds=50), WideWork(rounds=50), WideWork(rounds=50))
    result, _ = await run(flow, {"r0.inp": list(range(300))})
    assert sorted(result.outputs["c.seen"][0]) == sorted(spin(spin(spin(n, 50), 50), 50) for n in range(300))
    for name in ("r1", "r2"):
        s = result.stats.slots[f"{name}.inp"]
        assert (s.enqueued, s.processed, s.high_water) == (300, 300, 0), s
    assert_settled(result)


async def test_a_later_stage_of_a_process_chain_that_fails_fails_the_job_naming_it() -> None:
    # (one child: a request takes the whole chain along)
    result, _ = await run(chain(Square(), FailOn(victim=25)), {"r0.inp": list(range(100))}, processes=1)
    assert result.status is wf.JobStatus.FAILED
    assert result.error == "routine 'r1' failed: ValueError: bad 25"
    assert [(d.slot, d.item, d.reason) for d in result.dead_letters if d.slot == "r1.inp"] == [
        ("r1.inp", 25, "handler_failed")
    ]
    assert result.stats.routines["r1"].failures == 1
    assert_settled(result)


async def test_a_child_killed_in_a_later_stage_of_a_process_chain_fails_the_job_naming_it() -> None:
    flow = chain(Square(), FailOn(victim=25, kill=True))
    result, _ = await run(flow, {"r0.inp": list(range(100))}, processes=1)
    assert result.status is wf.JobStatus.FAILED
    assert (result.error or "").startswith("routine 'r1' failed: WorkerDiedError:")
    assert "signal 9" in (result.error or "")
    assert_settled(result)


async def test_a_later_stage_whose_emit_cannot_travel_back_fails_the_job_naming_it() -> None:
    """The chain's last routine emits what cannot be pickled: its call failed (it used to be
    reported as a failure of the request's first routine, and with a retry policy there
    the calls after it ran the chain again, counted twice)."""
    flow = chain(RetrySquare(), EmitLock(victim=25))
    result, _ = await run(flow, {"r0.inp": list(range(100))}, processes=1)
    assert result.status is wf.JobStatus.FAILED
    assert (result.error or "").startswith(
        "routine 'r1' failed: RemoteError: cannot send what the handler emitted back from its process"
    ), result.error
    s = result.stats.slots["r1.inp"]
    assert s.enqueued == s.processed + s.dead_lettered + s.size + s.in_flight
    assert s.processed <= 100 and result.stats.routines["r1"].calls <= 100
    assert result.stats.routines["r0"].failures == 0
    assert_settled(result)


async def test_a_later_stage_of_a_process_chain_keeps_its_state() -> None:
    """A stage's state goes with the request and comes back with its reply (once it has
    changed, the stage's requests take turns and it is no longer taken along)."""
    items = list(range(1000))
    result, job = await run(chain(Square(), Count()), {"r0.inp": items}, processes=1)
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert job.routine_state("r1")["n"] == 1000
    assert sorted(result.outputs["c.seen"][0]) == sorted(n * n for n in items)
    assert_settled(result)


async def test_with_a_journal_each_call_is_a_step_run_in_a_child() -> None:
    journal = LogJournal()
    result, _ = await run(chain(Square()), {"r0.inp": [1, 2, 3]}, journal=journal)
    assert result.outputs["c.seen"] == [[1, 4, 9]]
    steps = [r for r in journal.records if r["t"] == "done" and r["routine"] == "r0"]
    assert [r["emitted"] for r in steps] == [[["out", 1]], [["out", 4]], [["out", 9]]]
    assert [r["state"]["seen"] for r in steps] == [1, 2, 3]  # the state each step left
    assert_settled(result)


def test_executor_in_a_flow_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: p\n"
        "routines:\n"
        "  w: {use: 'tests.runtime.process_flows:Work', with: {rounds: 10}, executor: process}\n"
        "  c: {use: 'tests.runtime.flows:Collect'}\n"
        "connections: [w.out -> c.inp]\n"
        "outputs: [c.seen]\n"
    )
    flow = wf.Flow.load(path)
    assert flow.routines["w"].executor == "process"
    assert type(flow.routines["w"]).executor == "thread"
    assert flow.to_dict()["routines"]["w"]["executor"] == "process"
    result = wf.run(flow, {"w.inp": [1, 2]}, timeout_s=60)
    assert result.outputs["c.seen"] == [[spin(1, 10), spin(2, 10)]]

    path.write_text(path.read_text().replace("executor: process", "executor: fork"))
    with pytest.raises(wf.FlowError, match=r"routines\.w\.executor: must be 'thread' or 'process'"):
        wf.Flow.load(path)


async def test_a_state_counter_with_two_requests_at_once_counts_every_item() -> None:
    """Two batches used to start from the same ``ctx.state`` and the last to return won
    (2,000 items counted about 1,200)."""
    items = list(range(2000))
    result, job = await run(chain(Count()), {"r0.inp": items})
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert job.routine_state("r0")["n"] == 2000
    assert sorted(result.outputs["c.seen"][0]) == items  # each item's emits made once
    assert result.stats.slots["r0.inp"].processed == 2000
    assert_settled(result)


async def test_with_a_journal_a_state_counter_with_two_calls_at_once_counts_every_item() -> None:
    items = list(range(200))
    result, job = await run(chain(Count()), {"r0.inp": items}, journal=LogJournal())
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert job.routine_state("r0")["n"] == 200
    assert sorted(result.outputs["c.seen"][0]) == items
    assert_settled(result)


async def test_a_routine_that_leaves_its_state_alone_keeps_its_requests_concurrent(tmp_path: Path) -> None:
    fifo = tmp_path / "meet"
    os.mkfifo(fifo)
    try:
        result, _ = await run(chain(Meet(fifo=str(fifo))), {"r0.inp": [0, 1]})
    finally:  # if the two calls did not meet, let whichever waits go
        for flags in (os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY | os.O_NONBLOCK):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, flags))
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert sorted(result.outputs["c.seen"][0]) == [0, 1]
    assert_settled(result)


def test_a_child_closed_by_two_threads_at_once_closes_its_pipe_once() -> None:
    """A worker's shutdown closes the pool while the thread whose call the kill ended gives
    the dead child back (and closes it too): the pipe is closed once, and neither raises
    (a second close raised ``EBADF``, and could close a reused descriptor)."""
    pool = ProcessPool(max_processes=1)
    errors: list[BaseException] = []
    try:
        for _ in range(20):
            child = pool.checkout()
            start = threading.Barrier(3)

            def close(c: Any = child, b: threading.Barrier = start) -> None:
                b.wait()
                try:
                    c.close()
                except BaseException as e:  # noqa: BLE001 - collected for the assertion
                    errors.append(e)

            threads = [threading.Thread(target=close) for _ in range(2)]
            for t in threads:
                t.start()
            start.wait()
            for t in threads:
                t.join(10)
            pool.checkin(child)  # dead: dropped (and closed a third time)
            assert not child.alive()
    finally:
        pool.close()
    assert errors == []


async def test_pause_waits_for_a_process_chain_and_resume_goes_on() -> None:
    """A pause while requests run whole chains returns once they are back: no call of any
    stage runs, every slot balances; resuming finishes every item."""
    arrived = asyncio.Event()

    class First(wf.Hooks):
        def watches(self, point: str, target: str) -> bool:
            return point == "on_enqueue" and target == "c.inp"

        async def on_enqueue(self, point: wf.HookPoint) -> None:
            arrived.set()

    flow = chain(ProcessWork(rounds=3000), ProcessWork(rounds=3000), ProcessWork(rounds=3000))
    # (one child: the chain is one segment, taken along whole by every request of r0)
    async with wf.Engine(max_processes=1, hooks=[First()]) as e:
        job = await e.start(flow, {"r0.inp": list(range(400))})
        await asyncio.wait_for(arrived.wait(), 60)
        point = await job.pause(timeout_s=60)
        for path, s in point.queues.items():
            assert s.in_flight == 0, (path, s)
            assert s.enqueued == s.processed + s.size + s.dead_lettered, (path, s)
        assert point.queues["r0.inp"].processed == point.queues["r1.inp"].processed > 0
        assert job.queues()["r2.inp"].processed == point.queues["r2.inp"].processed  # none ran
        await job.resume()
        result = await job.wait(timeout_s=60)
    assert result.outputs["c.seen"] == [[spin(spin(spin(n, 3000), 3000), 3000) for n in range(400)]]
    assert_settled(result)
