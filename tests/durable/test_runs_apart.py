"""What a worker records and loses belongs to one run of a job (its claim, its token), not
to the job id: a run that ended here (lost, cancelled) leaves nothing in the journal of the
next run of the same job, even one this same worker claims at once, and its late refusals
do not stop the next run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store, open_store
from weirflow.durable.journal import DurableJournal, decoded
from weirflow.durable.worker import Worker
from weirflow.runtime.replay import restore_from

from . import flows
from .helpers import job_is, poll_store


class _Gated(wf.Routine):
    """Counts its calls; call ``n`` waits on ``release[n]`` (made by the test) if there is one."""

    item = wf.Slot()
    out = wf.Event()
    calls: ClassVar[list[str]] = []
    entered: ClassVar[dict[int, asyncio.Event]] = {}
    release: ClassVar[dict[int, asyncio.Event]] = {}

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        self.calls.append(ctx.routine)
        n = len(self.calls)
        if n in self.entered:
            self.entered[n].set()
        if n in self.release:
            await self.release[n].wait()
        await ctx.emit(self.out, item)


_FLOW = wf.Flow("gated3")
for _name in "abc":
    _FLOW.add(_name, _Gated())
_FLOW.connect("a.out", "b.item").connect("b.out", "c.item")
_FLOW.output("c.out")


async def _steps_done(store: Store, job_id: str) -> int:
    """How many steps the store's journal of the job resumes it past (what a taker does)."""
    return restore_from(decoded(job_id, await store.read_journal(job_id)), _FLOW).steps_done


async def _lost(w: Worker, n: int) -> bool:
    return w.lost >= n


@pytest.mark.parametrize("store_url", ["sqlite", "postgres", "redis"], indirect=True)
async def test_a_lost_runs_last_records_are_not_written_into_the_next_run_of_the_job(
    store_url: str, tmp_path: Path
) -> None:
    # run 1 is cancelled during b (call 2): its end record is made as it stops; the
    # from-start run claimed at once by the same worker does a (call 3) and waits in b
    # (call 4). Its journal must resume it past a: before, run 1's end record, still
    # buffered when run 2 began, was written under run 2's token after run 2's clear, and a
    # replay skips everything after an ``end`` (a taker would start the job over again).
    _Gated.calls.clear()
    _Gated.entered.clear()
    _Gated.release.clear()
    _Gated.entered.update({2: asyncio.Event(), 4: asyncio.Event()})
    _Gated.release.update({2: asyncio.Event(), 4: asyncio.Event()})
    store = open_store(store_url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="gated3", inputs={"a.item": [1]}, max_attempts=5))
        async with Worker(
            store, [_FLOW], worker_id="W", lease_s=30.0, heartbeat_s=0.3, poll_max_s=0.2, shutdown_grace_s=1.0
        ) as w:
            assert w.durable is not None
            # the journal's timer does not fire before the next claim (a loaded event loop):
            # the records wait for a flush
            w.durable.max_delay_s = 3600.0
            async with asyncio.timeout(30):
                await _Gated.entered[2].wait()  # run 1 is in b
            await w.durable.flush()  # with b's start
            await store.cancel(job_id)
            await poll_store(lambda: _lost(w, 1), timeout_s=30)  # the heartbeat stopped run 1
            await store.retry(job_id, from_start=True)
            async with asyncio.timeout(30):
                await _Gated.entered[4].wait()  # run 2 did a again and is in b
            await w.durable.flush()
            records = await DurableJournal(store).records_of(job_id)
            assert [(r["t"], r.get("routine")) for r in records] == [
                ("enq", None),
                ("start", "a"),
                ("enq", None),
                ("done", "a"),
                ("start", "b"),
            ], records
            assert await _steps_done(store, job_id) == 1
            _Gated.release[4].set()
            await poll_store(lambda: job_is(store, job_id, "completed", "failed"), timeout_s=30)
            w.stop()
        job = await store.get(job_id)
        assert job is not None and job.status == "completed", (job and job.status, job and job.error)
        assert _Gated.calls == ["a", "b", "a", "b", "c"]
    finally:
        for event in _Gated.release.values():
            event.set()
        await store.close()


class _JumpingClock:
    """The store's clock: the wall clock, moved ahead by hand."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead_s


def _calls(log: Path) -> tuple[int, list[tuple[float, float]]]:
    """How many calls of the step started, and (start, end) of each that ended, by start."""
    text = log.read_text().split()
    spans = [
        (float(t0), float(t1)) for kind, *_, t0, t1 in (line.split(":") for line in text) if kind == "end"
    ]
    return sum(1 for line in text if line.startswith("start:")), sorted(spans)


async def _steps_log_has(log: Path, what: str, n: int) -> bool:
    return log.exists() and log.read_text().count(what) >= n


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
async def test_a_worker_with_free_slots_does_not_run_a_lost_jobs_step_beside_its_lingering_call(
    store_url: str, tmp_path: Path
) -> None:
    # a ``def`` step runs 6 s on a thread nothing can stop; the store's clock jumps ahead,
    # so its lease runs out there and this same worker, with a slot free, claims the job
    # again: the first run is stopped (its call lingers) and the new run's call must not
    # start before that call returned (before, the lingering call's placeholder slot was
    # not seen as the job's, and the new run started at once: two attempts at once)
    clock = _JumpingClock()
    store = open_store(store_url, clock=clock)
    await store.open()
    steps_log = tmp_path / "steps.log"
    item = {
        "first_sleep_s": 6.0,
        "first_sleep_once": str(tmp_path / "slept"),
        "sleep_s": 0.1,
        "log": str(steps_log),
        "times": True,
    }
    try:
        job_id = await store.submit(JobSpec(flow="blocking", inputs={"a.item": [item]}, max_attempts=5))
        async with Worker(
            store,
            [flows.blocking],
            worker_id="W",
            lease_s=30.0,
            heartbeat_s=0.5,
            concurrency=3,
            poll_max_s=0.2,
        ) as w:
            await poll_store(lambda: _steps_log_has(steps_log, "start:", 1), timeout_s=30)
            clock.ahead_s = 120.0  # the lease runs out in the store while the call sleeps
            await poll_store(lambda: job_is(store, job_id, "completed", "failed"), timeout_s=60)
            w.stop()
        job = await store.get(job_id)
        assert job is not None and job.status == "completed", (job and job.status, job and job.error)
        started, spans = _calls(steps_log)
        assert started == 2 and len(spans) == 2, steps_log.read_text()
        (_, first_end), (second_start, _) = spans
        assert first_end <= second_start, steps_log.read_text()  # never two calls of the step at once
        assert w.lost >= 1
    finally:
        await store.close()
