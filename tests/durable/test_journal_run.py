"""Journaled calls in a row (``runtime.journal_run``): a routine of a durable job makes its
calls one after another in one frame, one ``Step`` reset per call when the journal keeps
none. The journal it writes is the journal of one call at a time (what a job with an
``on_handler_end`` hook still makes: ``_call_fast``), record for record, through state,
emits of none, one and two items, failures with a retry, and what a handler changes of a
step (its progress); and a journal that keeps its steps gets a new one for each call."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.durable.journal import DurableJournal, decoded
from weirflow.runtime import Journal, LogJournal
from weirflow.runtime.journal import Step

N = 60
POLICY = wf.ErrorPolicy(retries=1, backoff=wf.Backoff(initial_s=0, jitter=False), then="dead_letter")


class Mixed(wf.Routine):
    """Emits nothing, one or two items; keeps a count in its state now and then; fails
    once on some items (then succeeds on the retry); reports progress on others."""

    inp = wf.Slot()
    out = wf.Event()
    on_error = POLICY
    failed: set[int]

    @inp.handler
    async def take(self, item: int, ctx: wf.Context) -> None:
        if item % 7 == 3 and item not in self.failed:
            self.failed.add(item)
            raise ValueError(f"first attempt of {item}")
        if item % 5 == 1:
            ctx.progress(50, f"half of {item}")
        if item % 11 == 4:
            ctx.state["n"] = ctx.state.get("n", 0) + 1
        elif item % 11 == 5:
            ctx.state.clear()
        for k in range(item % 3):
            await ctx.emit(self.out, [item, k] if item % 4 == 0 else item * 10 + k)


class Forward(wf.Routine):
    inp = wf.Slot(capacity=4)  # (smaller than the run: its emits wait for room)
    out = wf.Event()

    @inp.handler
    async def forward(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


class Sink(wf.Routine):
    inp = wf.Slot()

    @inp.handler
    async def take(self, item: Any, ctx: wf.Context) -> None:
        pass


class Ends(wf.Hooks):
    """Watches handler ends: the runner makes one call per turn of its loop then."""

    def __init__(self) -> None:
        self.calls = 0

    def on_handler_end(
        self, job: Any, routine: str, item: Any, error: BaseException | None, duration_s: float
    ) -> None:
        self.calls += 1


class Steps(Journal):
    """Keeps every ``Step`` it is told of (``keeps_steps``: the default)."""

    def __init__(self) -> None:
        self.started: list[Step] = []

    def step_started(self, job: Any, step: Step) -> None:
        self.started.append(step)


def _flow() -> wf.Flow:
    f = wf.Flow("mixed")
    f.add("a", Mixed(failed=set()))
    f.add("b", Forward())
    f.add("c", Sink())
    f.connect("a.out", "b.inp")
    f.connect("b.out", "c.inp")
    return f


async def _journal(store: Store, hooks: list[wf.Hooks], extra: Journal | None = None) -> list[Any]:
    job_id = await store.submit(JobSpec(flow="mixed", inputs={}))
    durable = DurableJournal(store, drop_completed=False)
    log = LogJournal()
    journals = [durable, log] if extra is None else [durable, log, extra]
    async with wf.Engine(journal=wf.Journals(*journals)) as engine:
        job = await engine.start(_flow(), {"a.inp": list(range(N))}, job_id=job_id, hooks=hooks)
        result = await job.wait(timeout_s=30)
        assert result.status is wf.JobStatus.COMPLETED, result.error
        await durable.flush()
    records = decoded(job_id, await store.read_journal(job_id))
    assert records == json.loads(json.dumps(log.records))  # (what is stored is what was recorded)
    return records


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
async def test_calls_in_a_row_write_the_journal_of_one_call_at_a_time(store: Store) -> None:
    ends = Ends()
    one_at_a_time = await _journal(store, [ends])
    assert ends.calls > N  # (the hook saw every call: the runner made them one per turn)
    in_a_row = await _journal(store, [])
    assert in_a_row == one_at_a_time
    kinds = {r["t"] for r in in_a_row}
    assert kinds == {"enq", "start", "done", "end"}
    assert any(r["t"] == "done" and r["status"] == "failed" for r in in_a_row)  # (the retries)
    assert any(r["t"] == "done" and r["state"] for r in in_a_row)


@pytest.mark.parametrize("store_url", ["memory"], indirect=True)
async def test_a_journal_that_keeps_its_steps_gets_a_new_step_for_each_call(store: Store) -> None:
    steps = Steps()
    await _journal(store, [], extra=steps)
    assert len({id(s) for s in steps.started}) == len(steps.started)
    calls = {(s.routine, s.seq, s.attempt) for s in steps.started}
    assert len(calls) == len(steps.started)
    a = sorted(s.seq for s in steps.started if s.routine == "a" and s.attempt == 1)
    assert a == list(range(1, N + 1))
    assert all(s.status in ("completed", "failed") and s.final in (True, False) for s in steps.started)
    assert all(s.consumed[0][1] == s.seq - 1 for s in steps.started if s.routine == "a")


KINDS: list[Any] = [1, -(2**63), 2**64 - 1, "a", "é\\u0000 \n", 1.5, -0.0, True, None, [1, "x"], {"k": []}]
ITEMS = KINDS * 3


def _forwards() -> wf.Flow:
    f = wf.Flow("forwards")
    f.add("b", Forward())
    f.add("c", Sink())
    f.connect("b.out", "c.inp")
    return f


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
async def test_a_durable_journal_alone_records_what_a_log_journal_does(store: Store) -> None:
    """Alone, the durable journal takes starting inputs in runs (``inputs_enqueued``) and its
    routines reuse one step per run of calls: the same records as a ``LogJournal``'s."""
    job_id = await store.submit(JobSpec(flow="forwards", inputs={}))
    durable = DurableJournal(store, drop_completed=False)
    async with wf.Engine(journal=durable) as engine:
        job = await engine.start(_forwards(), {"b.inp": ITEMS}, job_id=job_id)
        assert (await job.wait(timeout_s=30)).status is wf.JobStatus.COMPLETED
        await durable.flush()
    log = LogJournal()
    async with wf.Engine(journal=log) as engine:
        job = await engine.start(_forwards(), {"b.inp": ITEMS})
        assert (await job.wait(timeout_s=30)).status is wf.JobStatus.COMPLETED
    records = decoded(job_id, await store.read_journal(job_id))
    assert records == json.loads(json.dumps(log.records))
    assert sum(r["t"] == "enq" and r["by"] == "input" for r in records) == len(ITEMS)


class General(DurableJournal):
    """A durable journal with no short way for a completed call (``Journal.call_completed``):
    every step ends through ``step_completed``, with its fields set."""

    def call_completed(self, job: Any, step: Step) -> bool:
        return False


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
async def test_a_call_completed_the_short_way_is_stored_as_the_general_way_stores_it(store: Store) -> None:
    """Alone, the durable journal takes most calls' ends by ``call_completed`` (runs of calls,
    no clock read, a step's fields left as they were): through state, emits of none, one and
    two items, failures with a retry and progress, the store holds what it holds when every
    end goes through ``step_completed``, and what a ``LogJournal`` records."""
    shorts = 0

    class Counting(DurableJournal):
        def call_completed(self, job: Any, step: Step) -> bool:
            nonlocal shorts
            took = super().call_completed(job, step)
            shorts += took
            return took

    stored: list[list[Any]] = []
    for kind in (Counting, General):
        job_id = await store.submit(JobSpec(flow="mixed", inputs={}))
        durable = kind(store, drop_completed=False)
        async with wf.Engine(journal=durable) as engine:
            job = await engine.start(_flow(), {"a.inp": list(range(N))}, job_id=job_id)
            result = await job.wait(timeout_s=30)
            assert result.status is wf.JobStatus.COMPLETED, result.error
            await durable.flush()
        stored.append(decoded(job_id, await store.read_journal(job_id)))
    assert shorts > N  # (most calls of the three routines ended the short way)
    assert stored[0] == stored[1]  # (record for record; the lines differ: runs of steps)
    log = LogJournal()
    async with wf.Engine(journal=log) as engine:
        job = await engine.start(_flow(), {"a.inp": list(range(N))})
        assert (await job.wait(timeout_s=30)).status is wf.JobStatus.COMPLETED
    assert stored[0] == json.loads(json.dumps(log.records))


class Shortcut(Journal):
    """Keeps no step and reads no times, takes every other call's end the short way, and
    notes how each step looks at its start and at its end."""

    keeps_steps = False
    reads_times = False

    def __init__(self) -> None:
        self.starts: list[tuple[Any, ...]] = []
        self.ends: list[tuple[Any, ...]] = []

    def step_started(self, job: Any, step: Step) -> None:
        self.starts.append((step.status, step.final, step.completed_at, list(step.emitted), step.emit_at))

    def call_completed(self, job: Any, step: Step) -> bool:
        self.ends.append(("short", step.status, step.final))
        return step.seq % 2 == 0

    def step_completed(self, job: Any, step: Step) -> None:
        self.ends.append(("general", step.status, step.final))


async def test_a_reused_step_starts_running_whichever_way_the_last_call_ended() -> None:
    journal = Shortcut()
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(_forwards(), {"b.inp": list(range(20))})
        assert (await job.wait(timeout_s=30)).status is wf.JobStatus.COMPLETED
    assert len(journal.starts) == 40
    assert all(s == ("running", False, None, [], -1) for s in journal.starts)
    shorts = [e for e in journal.ends if e[0] == "short"]
    assert len(shorts) == 40 and all(e[1:] == ("running", False) for e in shorts)
    assert [e for e in journal.ends if e[0] == "general"] == [("general", "completed", True)] * 20


class Spread(wf.Routine):
    """Emits an int, yields (other routines' steps start: its own is no longer held
    back), tries an item no store holds (refused, caught), then emits a list and a str."""

    inp = wf.Slot()
    out = wf.Event()
    refused: list[int]

    @inp.handler
    async def take(self, item: int, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)
        if item % 3:
            await asyncio.sleep(0)
        if item % 4 == 1:
            try:
                await ctx.emit(self.out, object())
            except wf.StoreError:
                self.refused.append(item)
        await ctx.emit(self.out, [item, "x"] if item % 2 else f"s{item}")


class Unfused(DurableJournal):
    """A durable journal that records every emit by ``check`` and ``enqueued``."""

    def emit_recorded(self, job: Any, slot: str, item: Any, step: Step) -> bool:
        return False


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
async def test_an_emit_recorded_in_one_call_is_stored_as_check_and_enqueued_store_it(store: Store) -> None:
    """Emits to one slot are checked and recorded by ``emit_recorded``: held back with their
    step or not (the step released by others' records while it waited), ints and other
    items, a refused item taken back, a full slot (its emits wait): the store holds
    record for record what it holds when every emit goes through ``check`` and
    ``enqueued``."""
    stored: list[list[Any]] = []
    refused: list[list[int]] = []
    for kind in (DurableJournal, Unfused):
        f = wf.Flow("spread")
        refused.append([])
        f.add("a", Spread(refused=refused[-1]))
        f.add("b", Forward())  # (capacity 4: a's emits wait for room)
        f.add("c", Sink())
        f.connect("a.out", "b.inp")
        f.connect("b.out", "c.inp")
        job_id = await store.submit(JobSpec(flow="spread", inputs={}))
        durable = kind(store, drop_completed=False)
        async with wf.Engine(journal=durable) as engine:
            job = await engine.start(f, {"a.inp": list(range(N))}, job_id=job_id)
            result = await job.wait(timeout_s=30)
            assert result.status is wf.JobStatus.COMPLETED, result.error
            assert result.stats.slots["c.inp"].processed == 2 * N
            await durable.flush()
        stored.append(decoded(job_id, await store.read_journal(job_id)))
    assert refused[0] == refused[1] == [i for i in range(N) if i % 4 == 1]
    assert stored[0] == stored[1]
    enqs = [r for r in stored[0] if r["t"] == "enq" and r["slot"] == "b.inp"]
    assert len(enqs) == 2 * N and {r["by"][2] for r in enqs} == {0, 1}  # (refused: not emitted)
