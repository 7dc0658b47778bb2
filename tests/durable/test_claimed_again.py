"""A worker whose lease on a job it still runs ran out (its clock jumped ahead: an NTP
step, a VM resumed; or renewals that did not get through) takes that job over itself in
its next claim: claims take back expired leases first, and a stalled job keeps its
place. The earlier run is then stopped here as a lost one, and the new run starts once
nothing of the earlier one is left: the job completes, its step ran again after the
first call stopped, never beside it. (Before, the new run could not start beside the old
one, ``a job with id ... already exists``, and that failed the job for good with
attempts left.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store, open_store
from weirflow.durable.metrics import QueueMetrics
from weirflow.durable.models import StepRecord
from weirflow.durable.sqlite import SqliteStore
from weirflow.durable.store import Leases
from weirflow.durable.worker import Worker
from weirflow.errors import StoreOpenError

from . import flows
from .helpers import job_is, poll_store

pytestmark = pytest.mark.slow


class JumpingClock:
    """The store's clock: the wall clock, moved ahead by hand."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead_s


async def _step_running(store: Store, job_id: str) -> bool:
    return any(s.status == "running" for s in await store.steps(job_id))


def _lines(log: Path, kind: str) -> list[list[str]]:
    return [line.split(":") for line in log.read_text().split() if line.startswith(f"{kind}:")]


@pytest.mark.parametrize("store_url", ["sqlite", "postgres", "redis"], indirect=True)
async def test_a_worker_that_claims_its_own_running_job_again_stops_the_first_run(
    store_url: str, tmp_path: Path
) -> None:
    clock = JumpingClock()
    store = open_store(store_url, clock=clock)
    await store.open()
    steps_log = tmp_path / "steps.log"
    item = {
        "first_sleep_s": 30.0,
        "first_sleep_once": str(tmp_path / "slept"),
        "sleep_s": 0.1,
        "log": str(steps_log),
        "times": True,
        "stops": True,
    }
    try:
        job_id = await store.submit(JobSpec(flow="one", inputs={"a.item": [item]}, max_attempts=5))
        # (renewals every 1.5 s: the claim loop, which looks for expired leases every
        # 0.5 s, comes first after the jump)
        async with Worker(
            store, [flows.one], worker_id="W", lease_s=2.0, heartbeat_s=1.5, concurrency=2, poll_max_s=0.2
        ) as w:
            await poll_store(lambda: _step_running(store, job_id), timeout_s=20)
            clock.ahead_s = 60.0  # the clock jumps a minute ahead while ``a`` runs
            await poll_store(lambda: job_is(store, job_id, "completed", "failed"), timeout_s=30)
            w.stop()
        job = await store.get(job_id)
        assert job is not None and job.status == "completed", (job and job.status, job and job.error)
        assert job.outputs is not None and len(job.outputs["a.out"]) == 1
        kinds = [e.kind for e in await store.events(job_id=job_id)]
        assert kinds == ["queued", "running", "stalled", "running", "completed"], kinds
        [stop] = _lines(steps_log, "stop")  # the first call, stopped by the worker
        first, second = _lines(steps_log, "start")
        assert float(first[5]) < float(stop[6]) <= float(second[5])  # never two calls at once
        assert len(_lines(steps_log, "end")) == 1
        [step] = await store.steps(job_id)
        assert (step.status, step.attempt) == ("completed", 2)
    finally:
        await store.close()


class _Slow(wf.Routine):
    """Its first call runs for half a minute (until the worker stops it), the next for 1 s."""

    item = wf.Slot()
    out = wf.Event()
    calls: ClassVar[list[int]] = []
    cancelled: ClassVar[list[int]] = []
    entered: ClassVar[dict[int, asyncio.Event]] = {}

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        self.calls.append(ctx.attempt)
        n = len(self.calls)
        if n in self.entered:
            self.entered[n].set()
        try:
            await asyncio.sleep(30 if n == 1 else 1.0)
        except asyncio.CancelledError:
            self.cancelled.append(n)
            raise
        await ctx.emit(self.out, n)


_SLOW = wf.Flow("slow")
_SLOW.add("r", _Slow())
_SLOW.output("r.out")


class _HeldStore(SqliteStore):
    """A real SQLite store whose next ``held`` call (``renew`` or ``record_steps``) waits at
    a gate before it runs: a write sent under the earlier run's token whose refusal comes
    back late (a slow network)."""

    held = "renew"
    gate: asyncio.Event | None = None
    at_gate: asyncio.Event | None = None

    async def _wait(self, what: str) -> None:
        if what == self.held and self.gate is not None:
            gate, self.gate = self.gate, None
            assert self.at_gate is not None
            self.at_gate.set()
            await gate.wait()

    async def renew(self, worker_id: str, leases: Leases, lease_s: float) -> list[str]:
        await self._wait("renew")
        return await super().renew(worker_id, leases, lease_s)

    async def record_steps(self, steps: Sequence[StepRecord]) -> list[str]:
        await self._wait("record_steps")
        return await super().record_steps(steps)


@pytest.mark.parametrize("held", ["renew", "record_steps"])
async def test_a_late_refusal_for_the_earlier_run_does_not_stop_the_run_claimed_again(
    tmp_path: Path, held: str
) -> None:
    _Slow.calls.clear()
    _Slow.cancelled.clear()
    _Slow.entered.clear()
    _Slow.entered.update({1: asyncio.Event(), 2: asyncio.Event()})
    clock = JumpingClock()
    store = _HeldStore(str(tmp_path / "wf.db"), clock=clock)
    store.held = held
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="slow", inputs={"r.item": [1]}, max_attempts=5))
        async with Worker(
            store, [_SLOW], worker_id="W", lease_s=2.0, heartbeat_s=0.4, concurrency=2, poll_max_s=0.2
        ) as w:
            async with asyncio.timeout(20):
                await _Slow.entered[1].wait()
            store.gate, store.at_gate = asyncio.Event(), asyncio.Event()
            gate = store.gate
            async with asyncio.timeout(20):
                await store.at_gate.wait()  # a write under the first run's token is on its way
            clock.ahead_s = 60.0  # the lease runs out in the store: the worker claims it again
            if held == "renew":  # (the heartbeat's write: the new run does not wait for it)
                async with asyncio.timeout(20):
                    await _Slow.entered[2].wait()  # the new run's call started
            else:  # a journal write under way: the new run starts once it has come back
                await poll_store(lambda: _claimed(store, job_id, 2), timeout_s=20)
            gate.set()  # the held write reaches the store: refused (the earlier token)
            await poll_store(lambda: job_is(store, job_id, "completed", "failed"), timeout_s=30)
            w.stop()
        job = await store.get(job_id)
        assert job is not None and job.status == "completed" and job.outputs == {"r.out": [2]}
        assert _Slow.cancelled == [1]  # the new run's call was not stopped
        assert [e.kind for e in await store.events(job_id=job_id)].count("stalled") == 1
    finally:
        await store.close()


async def _claimed(store: Store, job_id: str, token: int) -> bool:
    job = await store.get(job_id)
    return job is not None and job.token == token


async def test_a_worker_whose_store_cannot_be_opened_leaves_the_engines_journal_as_it_was() -> None:
    engine = wf.Engine()
    try:
        worker = Worker("postgresql://nobody@127.0.0.1:1/none", engine)
        with pytest.raises(StoreOpenError):
            await worker.run()
        assert engine.journal is None  # (it had the worker's step rows and durable journal)
    finally:
        await engine.close()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_the_metrics_count_each_run_of_a_job_claimed_again_once(store_url: str, tmp_path: Path) -> None:
    """The worker's metrics keep the two runs apart: the first ends ``lost``, the second
    ``completed``. (Before, the claim of the second run replaced
    the first's start, the first run's end was counted with it, and the completion of the
    job was not counted at all.)"""
    clock = JumpingClock()
    store = open_store(store_url, clock=clock)
    await store.open()
    item = {"first_sleep_s": 30.0, "first_sleep_once": str(tmp_path / "slept"), "sleep_s": 0.1}
    metrics = QueueMetrics()
    try:
        job_id = await store.submit(JobSpec(flow="one", inputs={"a.item": [item]}, max_attempts=5))
        async with Worker(
            store,
            [flows.one],
            worker_id="W",
            lease_s=2.0,
            heartbeat_s=1.5,
            concurrency=2,
            poll_max_s=0.2,
            metrics=metrics,
        ) as w:
            await poll_store(lambda: _step_running(store, job_id), timeout_s=20)
            clock.ahead_s = 60.0  # the store's lease runs out: the worker claims the job again
            await poll_store(lambda: job_is(store, job_id, "completed", "failed"), timeout_s=30)
            w.stop()
        job = await store.get(job_id)
        assert job is not None and job.status == "completed"
        assert metrics.attempts == {("default", "one", "lost"): 1, ("default", "one", "completed"): 1}
        assert w.completed == 1 and w.lost == 1
    finally:
        await store.close()
