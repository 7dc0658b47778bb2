"""Graceful shutdown of a worker process (``SIGTERM``) during a long step, for ``async``,
plain ``def`` and ``executor = "process"`` handlers: the grace period is honoured, then
the worker ends its handlers (a process handler's child is killed before the release),
gives the job back and ends the process, so another worker resumes it at once and no two
attempts of the step ever run at the same time."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from weirflow.durable import JobSpec, Store, open_store

from .helpers import poll_store
from .procs import WorkerProcess

GRACE_S = 3.0
STEP_S = 20.0
FLOWS = {"async": ("one", "a"), "def": ("blocking", "a"), "process": ("in_process", "a")}


async def step_running(store: Store, job_id: str, worker: str) -> bool:
    return any(s.status == "running" and s.worker == worker for s in await store.steps(job_id))


def attempts(log: Path) -> list[tuple[str, int, int, float, float | None]]:
    """(routine, attempt, pid, started, ended) of each handler call, from the steps log."""
    starts: dict[tuple[str, int, int], float] = {}
    ends: dict[tuple[str, int, int], float] = {}
    for line in log.read_text().split():
        kind, _job, routine, attempt, pid, *times = line.split(":")
        key = (routine, int(attempt), int(pid))
        if kind == "start":
            starts[key] = float(times[0])
        else:
            ends[key] = float(times[1])
    return [
        (r, a, p, t, ends.get((r, a, p))) for (r, a, p), t in sorted(starts.items(), key=lambda kv: kv[1])
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["async", "def", "process"])
async def test_sigterm_during_a_long_step_gives_it_the_grace_then_hands_it_over(
    url: str, tmp_path: Path, kind: str
) -> None:
    flow, routine = FLOWS[kind]
    steps_log = tmp_path / "steps.log"
    item = {"first_sleep_s": STEP_S, "sleep_s": 0.1, "log": str(steps_log), "times": True}
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow=flow, inputs={f"{routine}.item": [item]}))
        # a long lease: only a release lets the other worker resume before it expires
        args = ("--lease", "60", "--shutdown-grace", str(GRACE_S))
        with WorkerProcess(url, tmp_path / "a.log", "--worker-id", "A", *args) as a:
            await poll_store(lambda: step_running(store, job_id, "A"), timeout_s=30)
            await poll_store(lambda: _started(steps_log), timeout_s=30)  # (a process: in its child)
            with WorkerProcess(url, tmp_path / "b.log", "--worker-id", "B", *args) as b:
                asked = time.time()
                code = a.terminate(timeout_s=STEP_S)
                exited = time.time()
                assert code == 0
                # the grace was given in full, and the process did not wait for the thread
                assert exited - asked >= GRACE_S
                assert exited - asked < STEP_S / 2, exited - asked
                await poll_store(lambda: _completed(store, job_id), timeout_s=30)
                assert b.terminate() == 0
        calls = attempts(steps_log)
        assert [(r, n) for r, n, *_ in calls] == [(routine, 1), (routine, 2)]
        (_, _, pid_a, start_a, end_a), (_, _, pid_b, start_b, end_b) = calls
        if kind == "process":  # in a child of each worker's engine
            assert pid_a not in (a.proc.pid, b.proc.pid) and pid_b not in (a.proc.pid, b.proc.pid)
            assert not _alive(pid_a)  # A killed its child (before its release): nothing runs on
        else:
            assert pid_a == a.proc.pid and pid_b == b.proc.pid
        assert end_a is None  # A's attempt never ended: it died with A's process
        assert start_b >= start_a + GRACE_S and end_b is not None
        job = await store.get(job_id)
        assert job is not None and job.outputs is not None and len(job.outputs[f"{routine}.out"]) == 1
        assert [e.kind for e in await store.events(job_id=job_id)] == [
            "queued",
            "running",
            "released",
            "running",
            "completed",
        ]
        assert (job.attempt, job.stalls) == (1, 0)  # a release does not count as an attempt
        assert "worker_exiting" in a.output() and a.output().count("jobs_released") == 1
        assert "lease_lost" not in a.output()
    finally:
        await store.close()


async def _completed(store: Store, job_id: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status == "completed"


async def _started(log: Path) -> bool:
    return log.exists() and "start:" in log.read_text()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
