"""A worker that may have lost a job's lease starts no further step of it (issue 9 §1,
the "zombie" case): stopped past its lease (``SIGSTOP``) while another worker took the job
over, and continued, its runtime would otherwise go on calling handlers of the lost job
(their side effects and all) until the store refused its first write, a batch later.
Every step start asks the worker first (``WorkerCore._may_start``): not when the job was
lost, nor when its lease may have run out by the worker's own clock."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store, open_store
from weirflow.durable.worker import Worker
from weirflow.durable.worker_leases import LEASE_MARGIN_MAX_S

from .helpers import poll_store
from .procs import WorkerProcess

LEASE = "1.5"
ITEMS = 60


def _calls(path: Path) -> list[tuple[int, int]]:
    """``(pid, item)`` of each handler call started, in order."""
    if not path.exists():
        return []
    return [(int(pid), int(k)) for pid, k in (line.split() for line in path.read_text().splitlines())]


async def _started_by(path: Path, pid: int, n: int) -> bool:
    return len([c for c in _calls(path) if c[0] == pid]) >= n


async def _job_status(store: Store, job_id: str, status: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status == status


async def _said(worker: WorkerProcess, what: str) -> bool:
    return what in worker.output()


@pytest.mark.slow
async def test_a_worker_continued_past_its_lease_starts_no_step_of_the_lost_job(
    url: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    items = [{"k": k, "calls": str(calls), "sleep_s": 0.05} for k in range(ITEMS)]
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="tally", inputs={"t.item": items}, max_attempts=3))
        with WorkerProcess(url, tmp_path / "a.log", "--worker-id", "A", "--lease", LEASE) as a:
            await poll_store(lambda: _started_by(calls, a.proc.pid, 5), timeout_s=30)
            a.proc.send_signal(signal.SIGSTOP)  # A is frozen in the middle of a call
            with WorkerProcess(url, tmp_path / "b.log", "--worker-id", "B", "--lease", LEASE) as b:
                # A's lease runs out, B takes the job over and finishes it
                await poll_store(lambda: _job_status(store, job_id, "completed"), timeout_s=60)
                mark = len(_calls(calls))
                a.proc.send_signal(signal.SIGCONT)  # A's call in flight returns: what next?
                await poll_store(lambda: _said(a, "lease_lost"), timeout_s=30)
                assert b.terminate() == 0
            assert a.terminate() == 0  # (every call A started is in the file by now)
        ran = _calls(calls)
        by_a_after = [k for pid, k in ran[mark:] if pid == a.proc.pid]
        assert by_a_after == [], f"A started calls of the job it had lost: items {by_a_after}"
        assert {pid for pid, _ in ran} == {a.proc.pid, b.proc.pid}
        job = await store.get(job_id)
        assert job is not None and job.worker_id == "B"
        assert job.outputs is not None and sorted(job.outputs["t.out"]) == list(range(ITEMS))  # exactly once
        out = a.output()
        assert "lease_lost" in out and job_id in out
    finally:
        await store.close()


# -- in one process, on an injected clock ------------------------------------------------


class Clock:
    """The worker's monotonic clock, moved ahead by hand."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead_s


def _worker(flows: list[wf.Flow], clock: Clock, **options: Any) -> Worker:
    w = Worker("memory://", flows, worker_id="W", lease_s=30.0, poll_max_s=0.05, **options)
    w._monotonic = clock
    return w


async def test_may_start_refuses_once_the_lease_may_have_run_out() -> None:
    clock = Clock()
    w = _worker([], clock)
    now = clock()
    w._tokens["j"] = 3
    w._lease_from["j"] = now
    margin = w.lease_margin_s()
    assert margin == min(3.0, LEASE_MARGIN_MAX_S)
    clock.ahead_s = 30.0 - margin - 0.01
    assert w._may_start("j")
    assert w._may_start("not-held")  # (another worker's job on a shared engine)
    clock.ahead_s = 30.0 - margin + 0.01  # the store may give it to another worker now
    assert not w._may_start("j")
    assert "j" in w._lost and w.lost == 1  # lost here from now on, as the lease watch does
    clock.ahead_s = 0.0
    assert not w._may_start("j")  # (lost stays lost)
    assert w._may_start("not-held")


async def _run_one(w: Worker, job_id: str, moved: asyncio.Event) -> wf.JobResult:
    async with w:
        async with asyncio.timeout(20):
            await moved.wait()
            job = w.engine.jobs.get(job_id) or w.running.get(job_id)
            assert job is not None
            result = await job.wait()
        w.stop()
    return result


@pytest.mark.parametrize("record_steps", [True, False])
async def test_no_step_starts_after_the_lease_may_have_run_out(record_steps: bool) -> None:
    ran: list[int] = []
    moved = asyncio.Event()
    clock = Clock()

    @wf.routine
    async def count(item: int) -> int:
        ran.append(item)
        if item == 3:  # the worker was stopped here past its lease, say
            clock.ahead_s = 60.0
            moved.set()
        return item

    flow = wf.Flow("count")
    flow.add("n", count)
    flow.output("n.output")
    w = _worker([flow], clock, record_steps=record_steps)
    job_id = await w.store.submit(JobSpec(flow="count", inputs={"n.input": list(range(10))}))
    result = await _run_one(w, job_id, moved)
    assert ran == [0, 1, 2, 3]  # item 3's call returned; no call started after it
    assert result.status is wf.JobStatus.CANCELLED
    assert sorted(d.item for d in result.dead_letters) == list(range(4, 10))
    assert w.lost == 1 and w.completed == 0


async def test_no_retry_starts_in_the_lane_after_the_lease_may_have_run_out() -> None:
    ran: list[int] = []
    moved = asyncio.Event()
    clock = Clock()

    @wf.routine(on_error=wf.ErrorPolicy(retries=3, then="dead_letter"))
    async def flaky(item: int, ctx: wf.Context) -> int:
        ran.append(ctx.attempt)
        clock.ahead_s = 60.0  # stopped past its lease during the first attempt
        moved.set()
        raise wf.Retry(delay_s=0)

    flow = wf.Flow("flaky")
    flow.add("f", flaky)
    flow.output("f.output")
    w = _worker([flow], clock)
    job_id = await w.store.submit(JobSpec(flow="flaky", inputs={"f.input": [1]}))
    result = await _run_one(w, job_id, moved)
    assert w.lane_runs == 1
    assert ran == [1]  # the retry did not start
    assert result.status is wf.JobStatus.CANCELLED
    assert [d.item for d in result.dead_letters] == [1]
    assert w.lost == 1 and w.completed == 0
