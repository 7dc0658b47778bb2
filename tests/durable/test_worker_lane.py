"""The worker's lane for simple jobs (``weirflow.durable.worker_lane``) against the usual
path (a runtime ``Job``): each case runs once each way, and the journal calls the worker's
journals hear, the job, its steps, its dead letters and its events must be the same."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.durable.worker import Worker
from weirflow.runtime.journal import Journal, Step

from .conftest import StoreFactory
from .helpers import job_is, until

FAST = wf.Backoff(initial_s=0.001, max_s=0.001, jitter=False)
_release: dict[str, asyncio.Event] = {}  # by test name: a handler waiting to be let go
_entered: dict[str, asyncio.Event] = {}


class Emits(wf.Routine):
    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        ctx.state["seen"] = item
        ctx.progress(50, "half")
        await ctx.emit(self.out, {"item": item, "routine": ctx.routine, "attempt": ctx.attempt})
        await ctx.emit("out", [len(ctx.job_id)])


class FromThread(wf.Routine):
    """Emits from a thread of its own (the emit goes through the loop)."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        await asyncio.to_thread(ctx.emit, self.out, item)
        await asyncio.to_thread(ctx.emit, "out", [item])


class Flaky(wf.Routine):
    """Fails its first two attempts, then emits its attempt."""

    item = wf.Slot()
    out = wf.Event()
    on_error = wf.ErrorPolicy(retries=2, backoff=FAST, then="dead_letter")

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        if ctx.attempt < 3:
            raise ValueError(f"attempt {ctx.attempt} failed")
        await ctx.emit(self.out, ctx.attempt)


class Retries(wf.Routine):
    item = wf.Slot()
    out = wf.Event()
    on_error = wf.ErrorPolicy(retries=1, backoff=FAST, then="dead_letter")

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        raise wf.Retry("not yet", delay_s=0.001)


class BrokenCtx(wf.Routine):
    item = wf.Slot()
    out = wf.Event()
    on_error = wf.ErrorPolicy(then="dead_letter")

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        if item == "unknown":
            await ctx.emit("nope", item)
        elif item == "nan":
            await ctx.emit(self.out, math.nan)
        await ctx.emit(self.out, "before")
        raise KeyError(item)


class FailsJob(wf.Routine):
    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        ctx.state["tried"] = True
        raise RuntimeError("the job cannot go on")


class Mutates(wf.Routine):
    """Changes an item it emitted (not the last) into one the journal cannot record: the
    step's record, which encodes it again, fails the job."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        first: dict[str, Any] = {"n": item}
        await ctx.emit(self.out, first)
        await ctx.emit(self.out, {"n": item + 1})
        first["n"] = math.nan


class Waits(wf.Routine):
    """Waits to be let go (the test cancels or times the job out meanwhile)."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, "started")
        _entered[item].set()
        await _release[item].wait()


def _flow(name: str, routine: wf.Routine) -> wf.Flow:
    flow = wf.Flow(name)
    flow.add("r", routine)
    flow.output("r.out")
    return flow


FLOWS = [
    _flow("emits", Emits()),
    _flow("from_thread", FromThread()),
    _flow("flaky", Flaky()),
    _flow("retries", Retries()),
    _flow("broken", BrokenCtx()),
    _flow("fails_job", FailsJob()),
    _flow("waits", Waits()),
    _flow("mutates", Mutates()),
]


class Recorder(Journal):
    """Forwards to the worker's journals and keeps what each call was told (the job by
    id, steps and letters by their fields, times left out)."""

    def __init__(self, inner: Journal) -> None:
        self.inner = inner
        self.calls: list[tuple[Any, ...]] = []

    @staticmethod
    def _step(step: Step) -> tuple[Any, ...]:
        return (
            step.routine,
            step.seq,
            step.attempt,
            list(step.consumed),
            list(step.emitted),
            dict(step.state),
            step.status,
            step.error,
            step.final,
            step.on_end,
            step.progress,
            step.message,
            _trace(step.traceback),
        )

    async def job_started(self, job: Any) -> None:
        self.calls.append(("job_started",))
        await self.inner.job_started(job)

    def job_restored(self, job: Any) -> None:
        self.calls.append(("job_restored",))
        self.inner.job_restored(job)

    def job_ending(self, job: Any, status: Any, error: str | None) -> None:
        self.calls.append(("job_ending", status, error))
        self.inner.job_ending(job, status, error)

    def check(self, item: Any) -> None:
        self.calls.append(("check", repr(item)))
        self.inner.check(item)

    def enqueued(self, job: Any, slot: str, item: Any, origin: Step | str | None) -> None:
        self.calls.append(("enqueued", slot, item, origin if not isinstance(origin, Step) else "step"))
        self.inner.enqueued(job, slot, item, origin)

    def step_started(self, job: Any, step: Step) -> None:
        self.calls.append(("step_started", self._step(step)))
        self.inner.step_started(job, step)

    def step_progress(self, job: Any, step: Step) -> None:
        self.calls.append(("step_progress", self._step(step)))
        self.inner.step_progress(job, step)

    def step_completed(self, job: Any, step: Step) -> None:
        self.calls.append(("step_completed", self._step(step)))
        self.inner.step_completed(job, step)

    def step_completed_ending(self, job: Any, step: Step, status: Any) -> None:
        # (the lane's one call for its last step's end and the job's: recorded as the two it
        # stands for, and passed on as one, so the worker's journals take their short way)
        self.calls.append(("step_completed", self._step(step)))
        self.inner.step_completed_ending(job, step, status)
        if not job.finished:  # (else a record the journal could not make failed the job)
            self.calls.append(("job_ending", status, None))

    def dead_lettered(self, job: Any, letter: Any, *, from_queue: bool) -> None:
        self.calls.append(
            ("dead_lettered", letter.slot, letter.item, letter.reason, letter.error, from_queue)
        )
        self.inner.dead_lettered(job, letter, from_queue=from_queue)

    async def job_finished(self, job: Any, result: Any) -> None:
        self.calls.append(("job_finished", *_result(result)))
        await self.inner.job_finished(job, result)

    def job_finished_now(self, job: Any, result: Any) -> None:
        self.calls.append(("job_finished", *_result(result)))
        self.inner.job_finished_now(job, result)

    def finish_awaits(self) -> bool:
        return self.inner.finish_awaits()

    def lagging(self) -> Any:
        return self.inner.lagging()


_OWN_FRAME = re.compile(
    r'  File "[^"]*(runtime/runner|runtime/journal_run|runtime/delivery|runtime/context'
    r'|durable/worker_lane)\.py".*\n'
    r".*\n( *[~^]+\n)?"
)


def _trace(text: str | None) -> str | None:
    """A traceback without weirflow's own frames around the handler (the runner's or the
    lane's call, the runtime's or the lane's emit): the handler's frames and below stay."""
    if text is None:
        return None
    return _OWN_FRAME.sub("", text)


def _result(result: Any) -> tuple[Any, ...]:
    stats = result.stats
    slots = {p: {k: v for k, v in vars(q).items() if k != "blocked_s"} for p, q in stats.slots.items()}
    routines = {n: {k: v for k, v in vars(r).items() if k != "busy_s"} for n, r in stats.routines.items()}
    letters = [(d.slot, d.item, d.reason, d.error) for d in result.dead_letters]
    return (
        result.status,
        result.outputs,
        result.error,
        letters,
        result.dead_letter_count,
        result.dead_letter_reasons,
        _trace(result.traceback),
        slots,
        routines,
        stats.inputs,
        stats.entry_slots,
    )


async def _run(
    store: Store, flow: str, item: Any, *, lane: bool, timeout_s: float | None = None, cancel: bool = False
) -> tuple[Any, ...]:
    """One job, run by a worker with or without the lane: what the journals heard and what
    the store holds of it (not its journal rows: how many a flush timer wrote meanwhile
    depends on timing; the calls the journal heard are compared instead)."""
    key = f"{flow}-{lane}"
    if flow == "waits":
        item = key
        _release[key], _entered[key] = asyncio.Event(), asyncio.Event()
    job_id = await store.submit(
        JobSpec(flow=flow, inputs={"r.item": [item]}, max_attempts=1, timeout_s=timeout_s)
    )
    w = Worker(store, FLOWS, worker_id="w", poll_max_s=0.2, lease_s=1.5)
    w.simple_lane = lane
    recorder = Recorder(w.engine.journal)  # type: ignore[arg-type]
    w.engine.journal = recorder
    async with w:
        if cancel:
            async with asyncio.timeout(20):
                await _entered[key].wait()
            await store.cancel(job_id)
        await until(_finished(store, job_id), w)
    assert w.lane_runs == (1 if lane else 0)
    record = await store.get(job_id)
    assert record is not None
    steps = [
        (s.routine, s.seq, s.attempt, s.status, s.error, s.progress, s.message, _trace(s.traceback))
        for s in await store.steps(job_id)
    ]
    letters = [{k: v for k, v in d.items() if k != "at"} for d in record.dead_letters or []]
    events = [e.kind for e in await store.events(job_id=job_id)]
    return (
        _no_key(recorder.calls, key),
        record.status,
        record.attempt,
        _no_key(record.error, key),
        _no_key(record.outputs, key),
        _no_key(letters, key),
        steps,
        events,
    )


def _no_key(value: Any, key: str) -> Any:
    """``value`` with the ``waits`` flow's per-run item (``key``) as ``"ITEM"``, and NaN
    as a text (NaN is not equal to itself)."""
    if isinstance(value, str):
        return "ITEM" if value == key else value.replace(repr(key), "'ITEM'")
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list | tuple):
        return type(value)(_no_key(v, key) for v in value)
    if isinstance(value, dict):
        return {_no_key(k, key): _no_key(v, key) for k, v in value.items()}
    return value


def _finished(store: Store, job_id: str) -> Any:
    async def check() -> bool:
        return await job_is(store, job_id, "completed", "failed", "cancelled") is not None

    return check


CASES = [
    pytest.param("emits", 7, {}, id="emits-state-progress"),
    pytest.param("from_thread", {"a": 1}, {}, id="emits-from-a-thread"),
    pytest.param("flaky", 1, {}, id="retried-then-completed"),
    pytest.param("retries", 1, {}, id="retry-exhausted-dead-letter"),
    pytest.param("broken", "plain", {}, id="error-dead-letter"),
    pytest.param("broken", "unknown", {}, id="unknown-event"),
    pytest.param("broken", "nan", {}, id="unstorable-emit"),
    pytest.param("fails_job", 1, {}, id="fail-job"),
    pytest.param("waits", None, {"timeout_s": 0.5}, id="job-timeout"),
    pytest.param("mutates", 1, {}, id="emitted-item-changed-after"),
]


@pytest.mark.parametrize("store_url", ["memory", "sqlite", "postgres", "redis"], indirect=True)
@pytest.mark.parametrize(("flow", "item", "options"), CASES)
async def test_the_lane_does_what_a_runtime_job_does(
    make_store: StoreFactory, flow: str, item: Any, options: dict[str, Any]
) -> None:
    store = await make_store()
    usual = await _run(store, flow, item, lane=False, **options)
    lane = await _run(store, flow, item, lane=True, **options)
    assert lane == usual
    assert usual[0], "the journals heard nothing"


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
async def test_a_job_cancelled_in_the_store_is_cancelled_in_the_lane_as_in_a_job(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    usual = await _run(store, "waits", None, lane=False, cancel=True)
    lane = await _run(store, "waits", None, lane=True, cancel=True)
    assert lane == usual
    assert ("job_ending", wf.JobStatus.CANCELLED, None) in usual[0]
    assert usual[1] == "cancelled"


async def test_jobs_the_lane_does_not_take_go_the_usual_way(make_store: StoreFactory) -> None:
    """Two items, an unknown slot: a runtime ``Job`` runs them (and says so as before)."""
    store = await make_store()
    two = await store.submit(JobSpec(flow="emits", inputs={"r.item": [1, 2]}, max_attempts=1))
    bad = await store.submit(JobSpec(flow="emits", inputs={"r.nope": [1]}, max_attempts=1))
    async with Worker(store, FLOWS, worker_id="w", poll_max_s=0.2) as w:
        await until(_finished(store, two), w)
        await until(_finished(store, bad), w)
    assert w.lane_runs == 0
    done = await store.get(two)
    assert done is not None and done.status == "completed"
    assert [o["item"] for o in done.outputs["r.out"][::2]] == [1, 2]
    failed = await store.get(bad)
    assert failed is not None and failed.status == "failed" and "nope" in (failed.error or "")
