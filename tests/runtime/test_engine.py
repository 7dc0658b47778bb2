"""Engine and job lifecycle edges: timeouts, closing, bad inputs, threads, journal."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

import weirflow as wf
from tests.conftest import assert_settled
from tests.runtime.flows import Collect, Forward


def _pair() -> wf.Flow:
    flow = wf.Flow("pair")
    flow.add("a", Forward())
    flow.add("b", Collect())
    flow.connect("a.out", "b.inp")
    flow.output("b.seen")
    return flow


def test_run_timeout_cancels_and_raises() -> None:
    class Forever(wf.Routine):
        inp = wf.Slot()

        @inp.handler
        async def wait(self, item: int, ctx: wf.Context) -> None:
            await asyncio.Event().wait()

    flow = wf.Flow("forever").add("f", Forever())
    with pytest.raises(wf.JobTimeoutError, match=r"did not finish within 0\.1s"):
        wf.run(flow, {"f.inp": [1]}, timeout_s=0.1)


async def test_unknown_input_slot_is_refused_before_anything_runs() -> None:
    async with wf.Engine() as engine:
        with pytest.raises(wf.JobError, match=r"no slot 'b\.nope' \(slots: a\.inp, b\.inp\)"):
            await engine.start(_pair(), {"b.nope": [1]})
        assert engine.jobs == {}
        job = await engine.start(_pair(), keep_open=True)
        with pytest.raises(wf.JobError, match="no slot"):
            await job.send("x.y", 1)
        await job.close_input()
        with pytest.raises(wf.JobError, match="input is closed"):
            await job.send("a.inp", 1)
        await job.wait(timeout_s=5)


async def test_initial_inputs_refused_by_a_fail_slot_are_dead_lettered() -> None:
    flow = _pair()
    flow.slot("a.inp", capacity=2, overflow="fail")
    async with wf.Engine() as engine:
        job = await engine.start(flow, {"a.inp": list(range(5))})
        job.pause_routine("a")
        job.pause_routine("a")  # idempotent
        job.resume_routine("a")
        result = await job.wait(timeout_s=5)
    seen = result.outputs["b.seen"][0]
    rejected = [d.item for d in result.dead_letters if d.reason == "input_rejected"]
    assert sorted(seen + rejected) == list(range(5))
    assert len(rejected) == 3
    assert_settled(result)


async def test_engine_close_cancels_unfinished_jobs() -> None:
    engine = wf.Engine()
    job = await engine.start(_pair(), keep_open=True)
    await job.send("a.inp", 1)
    await engine.close()
    assert job.status is wf.JobStatus.CANCELLED
    with pytest.raises(wf.JobError, match="closed"):
        await engine.start(_pair())


async def test_sync_handler_blocked_in_emit_is_released_by_cancel() -> None:
    in_emit = threading.Event()
    returned = threading.Event()
    outcome: list[str] = []

    class Pusher(wf.Routine):
        inp = wf.Slot()
        out = wf.Event()

        @inp.handler
        def push(self, n: int, ctx: wf.Context) -> None:
            try:
                for i in range(n):
                    if i == 1:
                        in_emit.set()
                    ctx.emit(self.out, i)
            except wf.JobError as e:
                outcome.append(str(e))
            finally:
                returned.set()

    flow = wf.Flow("push").add("p", Pusher()).add("c", Collect())
    flow.connect("p.out", "c.inp")
    flow.slot("c.inp", capacity=1)
    async with wf.Engine() as engine:
        job = await engine.start(flow, {"p.inp": [10]})
        job.pause_routine("c")
        await asyncio.to_thread(in_emit.wait, 5)
        result = await job.cancel()
        # the handler's thread is the routine's own, not the engine's pool: wait for it
        assert await asyncio.to_thread(returned.wait, 5)
    assert result.status is wf.JobStatus.CANCELLED
    assert len(outcome) == 1
    assert "cancelled" in outcome[0]
    assert_settled(result)


async def test_on_end_failure_follows_the_error_policy() -> None:
    class BadEnd(wf.Routine):
        inp = wf.Slot()
        on_error = wf.ErrorPolicy(then="dead_letter")

        @inp.handler
        def take(self, item: int) -> None: ...

        def on_end(self, ctx: wf.Context) -> None:
            raise RuntimeError("cannot flush")

    result = await _run(wf.Flow("e").add("e", BadEnd()), {"e.inp": [1]})
    assert result.status is wf.JobStatus.COMPLETED
    (letter,) = result.dead_letters
    assert (letter.slot, letter.reason) == ("e.on_end", "on_end_failed")
    assert letter.error == "RuntimeError: cannot flush"

    class FatalEnd(BadEnd):
        on_error = wf.ErrorPolicy()

    result = await _run(wf.Flow("f").add("f", FatalEnd()), {"f.inp": [1]})
    assert result.status is wf.JobStatus.FAILED
    assert result.error == "routine 'f' failed: RuntimeError: cannot flush"


async def test_emitting_an_unknown_event_fails_the_call() -> None:
    class Typo(wf.Routine):
        inp = wf.Slot()

        @inp.handler
        async def take(self, item: int, ctx: wf.Context) -> None:
            await ctx.emit("ouput", item)

    result = await _run(wf.Flow("t").add("t", Typo()), {"t.inp": [1]})
    assert result.status is wf.JobStatus.FAILED
    assert result.error is not None
    assert "routine 't' has no event 'ouput'" in result.error


class RecordingJournal(wf.Journal):
    def __init__(self) -> None:
        self.records: list[tuple[str, Any]] = []

    async def job_started(self, job: wf.Job) -> None:
        self.records.append(("started", job.flow.name))

    def enqueued(self, job: wf.Job, slot: str, item: Any, origin: wf.Step | str | None) -> None:
        by = (origin.routine, origin.seq) if isinstance(origin, wf.Step) else origin
        self.records.append(("enqueued", (slot, item, by)))

    def step_started(self, job: wf.Job, step: wf.Step) -> None:
        self.records.append(("start", (step.routine, step.seq, step.attempt, list(step.consumed))))

    def step_completed(self, job: wf.Job, step: wf.Step) -> None:
        state = json.dumps(step.state)  # values are live: serialise during the call
        self.records.append(("step", (step.routine, step.seq, step.consumed, step.emitted, state)))

    async def job_finished(self, job: wf.Job, result: wf.JobResult) -> None:
        self.records.append(("finished", result.status.value))


async def test_journal_sees_every_enqueue_and_step() -> None:
    journal = RecordingJournal()
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(_pair(), {"a.inp": ["x", "y"]})
        await job.wait(timeout_s=5)
    steps = [r[1] for r in journal.records if r[0] == "step"]
    assert sorted(steps) == [
        ("a", 1, [("inp", "x")], [("out", "x")], "{}"),
        ("a", 2, [("inp", "y")], [("out", "y")], "{}"),
        ("b", 1, [("inp", "x")], [], '{"seen": ["x"]}'),
        ("b", 2, [("inp", "y")], [], '{"seen": ["x", "y"]}'),
        ("b", 3, [], [("seen", ["x", "y"])], '{"seen": ["x", "y"]}'),  # on_end is a step too
    ]
    enq = [r[1] for r in journal.records if r[0] == "enqueued"]
    assert sorted(enq) == [
        ("a.inp", "x", "input"),
        ("a.inp", "y", "input"),
        ("b.inp", "x", ("a", 1)),
        ("b.inp", "y", ("a", 2)),
    ]
    # each step starts before it completes, and what it emitted is enqueued in between
    kinds = [r[0] for r in journal.records]
    assert kinds[0] == "started"
    assert kinds[-1] == "finished"
    assert kinds.index("start") < kinds.index("step")


async def _run(flow: wf.Flow, inputs: dict[str, Any]) -> wf.JobResult:
    async with wf.Engine() as engine:
        job = await engine.start(flow, inputs)
        return await job.wait(timeout_s=10)
