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
from .test_shutdown import FLOWS

#: the job's time limit: room for a process step's child to start on a loaded machine
LIMIT_S = {"def": 3.0, "process": 8.0}
#: the first attempt's step runs this long: well past the job's time limit
FIRST_S = {"def": 7.0, "process": 16.0}


async def _completed(store: Store, job_id: str) -> bool:
    j = await store.get(job_id)
    return j is not None and j.status == "completed"


def _starts(log: Path) -> int:
    return log.read_text().count("start:") if log.exists() else 0


def _calls(log: Path) -> tuple[list[tuple[int, float]], list[float]]:
    """The steps log in its order: (pid, time) of each call's start, the time of each end
    (two calls of one attempt in one pid look alike: the order tells them apart)."""
    starts: list[tuple[int, float]] = []
    ends: list[float] = []
    for line in log.read_text().split():
        kind, *_, pid, t = line.split(":")
        if kind == "start":
            starts.append((int(pid), float(t)))
        else:
            ends.append(float(t))
    return starts, ends


async def _check_no_overlap(kind: str, log: Path, store: Store, job_id: str, worker: WorkerProcess) -> None:
    async def second_started() -> bool:
        return _starts(log) >= 2

    await poll_store(second_started, timeout_s=60)
    first_pid = _calls(log)[0][0][0]
    try:
        alive = psutil.Process(first_pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    await poll_store(lambda: _completed(store, job_id), timeout_s=60)
    starts, ends = _calls(log)
    if kind == "process":
        # the first call's child was killed when the job ended, before the next call
        assert first_pid != starts[1][0]
        assert not alive, f"the first call's child {first_pid} still ran when the next one started"
    else:
        # the first call's thread ran its step to the end, and the next call came after:
        # had they overlapped, the first end logged would be the short second call's
        assert ends, starts
        assert starts[1][1] >= ends[0], (
            f"overlap: call 2 started at {starts[1][1]:.2f}, call 1 ended at {ends[0]:.2f}"
        )
    if kind == "def":  # (a thread cannot be stopped: the worker must have waited for it)
        assert "calls_still_running" in worker.output()
    # (a process call's child is killed at the job's end; its pool thread may have
    # returned before the job counted it as lingering, and then there is nothing to wait
    # for: that its child was dead before the next call started is what is asserted)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["def", "process"])
async def test_a_timed_out_attempt_ends_before_its_retry_starts(url: str, tmp_path: Path, kind: str) -> None:
    flow, routine = FLOWS[kind]
    log = tmp_path / "steps.log"
    # only the first call sleeps long, whatever attempt the next call counts itself (a
    # step whose start the journal had not committed when the job stopped runs as 1 again)
    once = str(tmp_path / "slept")
    item = {
        "first_sleep_s": FIRST_S[kind],
        "first_sleep_once": once,
        "sleep_s": 0.1,
        "log": str(log),
        "times": True,
    }
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
        waited = out.find("calls_still_running")
        assert "lease_lost" not in out[: waited if waited >= 0 else out.find("job_retrying")]
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
    # only the first call sleeps long, whatever attempt the next call counts itself (a
    # step whose start the journal had not committed when the job stopped runs as 1 again)
    once = str(tmp_path / "slept")
    item = {
        "first_sleep_s": FIRST_S[kind],
        "first_sleep_once": once,
        "sleep_s": 0.1,
        "log": str(log),
        "times": True,
    }
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
