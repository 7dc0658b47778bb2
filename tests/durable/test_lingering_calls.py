"""An attempt is not over until its handler calls have returned or been killed (review
s19 A): a job that ends by its ``timeout_s``, or is lost (cancelled in the store), while
a plain ``def`` step runs on a thread (which nothing can stop) or a process step runs in
a child (killed at the job's end) is not reported, and its worker's slot not freed, until
that call has ended, so the step's next attempt never runs beside the old one here.

Real worker processes on every store; the steps log their start and end times (and the
pid running them: for a process step, its child's)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from weirflow.durable import JobSpec, Store, open_store

from .helpers import poll_store
from .procs import WorkerProcess
from .test_shutdown import FLOWS, attempts

#: the job's time limit: room for a process step's child to start on a loaded machine
LIMIT_S = {"def": 3.0, "process": 8.0}
#: the first attempt's step runs this long: well past the job's time limit
FIRST_S = {"def": 7.0, "process": 16.0}


async def _completed(store: Store, job_id: str) -> bool:
    j = await store.get(job_id)
    return j is not None and j.status == "completed"


def _starts(log: Path) -> int:
    return log.read_text().count("start:") if log.exists() else 0


async def _second_attempt_started(log: Path) -> tuple[int, bool]:
    """Wait until the step's second attempt started; (the first attempt's pid, whether
    that process is still alive right then)."""

    async def started() -> bool:
        return _starts(log) >= 2

    await poll_store(started, timeout_s=60)
    first_pid = attempts(log)[0][2]
    try:
        alive = psutil.Process(first_pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    return first_pid, alive


async def _check_no_overlap(kind: str, log: Path, store: Store, job_id: str, worker: WorkerProcess) -> None:
    first_pid, alive = await _second_attempt_started(log)
    await poll_store(lambda: _completed(store, job_id), timeout_s=60)
    calls = attempts(log)
    (_, a1, _, _, e1), (_, a2, _, s2, _) = calls[:2]
    assert (a1, a2) == (1, 2), calls
    if kind == "process":
        # the first attempt's child was killed when the job ended, before the retry
        assert first_pid != calls[1][2]
        assert not alive, f"the first attempt's child {first_pid} still ran when attempt 2 started"
    else:
        # the first attempt's thread ran its step to the end: the retry came after
        assert e1 is not None, calls
        assert s2 >= e1, f"overlap: attempt 2 started at {s2:.2f}, attempt 1 ended at {e1:.2f}"
    assert "calls_still_running" in worker.output()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["def", "process"])
async def test_a_timed_out_attempt_ends_before_its_retry_starts(url: str, tmp_path: Path, kind: str) -> None:
    flow, routine = FLOWS[kind]
    log = tmp_path / "steps.log"
    item = {"first_sleep_s": FIRST_S[kind], "sleep_s": 0.1, "log": str(log), "times": True}
    store = open_store(url)
    await store.open()
    try:
        spec = JobSpec(flow=flow, inputs={f"{routine}.item": [item]}, timeout_s=LIMIT_S[kind], max_attempts=2)
        job_id = await store.submit(spec)
        # a lease shorter than the step: the worker must keep renewing it while it waits
        with WorkerProcess(url, tmp_path / "a.log", "--worker-id", "A", "--lease", "2") as a:
            await _check_no_overlap(kind, log, store, job_id, a)
            a.terminate()
        out = a.output()
        # its lease was kept (renewed) while the worker waited for the timed-out call
        # (a renewal that crossed the retry's write may call it lost after the wait)
        assert "lease_lost" not in out[: out.index("calls_still_running")]
        job = await store.get(job_id)
        assert job is not None and job.attempt == 2
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["def", "process"])
async def test_a_lost_attempt_ends_before_its_worker_takes_the_job_again(
    url: str, tmp_path: Path, kind: str
) -> None:
    # cancelled in the store while its step runs, then retried: the worker that lost it
    # (one job at a time) must not take it again while its old call runs
    flow, routine = FLOWS[kind]
    log = tmp_path / "steps.log"
    item = {"first_sleep_s": FIRST_S[kind], "sleep_s": 0.1, "log": str(log), "times": True}
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow=flow, inputs={f"{routine}.item": [item]}))
        args = ("--worker-id", "A", "--lease", "2", "--concurrency", "1")
        with WorkerProcess(url, tmp_path / "a.log", *args) as a:

            async def started() -> bool:
                return _starts(log) >= 1

            async def lost() -> bool:
                return "lease_lost" in a.output()

            await poll_store(started, timeout_s=60)
            await store.cancel(job_id)
            await poll_store(lost, timeout_s=60)
            await store.retry(job_id)
            await _check_no_overlap(kind, log, store, job_id, a)
            a.terminate()
    finally:
        await store.close()
