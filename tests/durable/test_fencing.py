"""Fencing with real worker processes: a worker paused past its lease (``SIGSTOP``) and
continued after another worker took its job over cannot write to that job."""

from __future__ import annotations

import signal
from pathlib import Path

from weirflow.durable import JobSpec, Store, open_store
from weirflow.durable.journal import DurableJournal

from .helpers import poll_store, step_outcomes
from .procs import WorkerProcess

LEASE = "1.5"


async def step_by(store: Store, job_id: str, routine: str, worker: str, status: str = "running") -> bool:
    return any(
        (s.routine, s.worker, s.status) == (routine, worker, status) for s in await store.steps(job_id)
    )


async def _journal_started(store: Store, job_id: str, routine: str) -> bool:
    records = await DurableJournal(store).records_of(job_id)
    return any(r["t"] == "start" and r["routine"] == routine for r in records)


async def test_a_worker_paused_past_its_lease_cannot_write_to_the_job(url: str, tmp_path: Path) -> None:
    steps_log = tmp_path / "steps.log"
    item = {"sleeps": {"a": 0.2, "b": 2.0, "c": 0.2}, "log": str(steps_log)}
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="steps3", inputs={"a.item": [item]}, max_attempts=3))
        with WorkerProcess(url, tmp_path / "a.log", "--worker-id", "A", "--lease", LEASE) as a:
            await poll_store(lambda: step_by(store, job_id, "b", "A"), timeout_s=30)
            # (and its journal holds b's start: the step row can come first, and B resumes
            # from what the journal committed)
            await poll_store(lambda: _journal_started(store, job_id, "b"), timeout_s=30)
            a.proc.send_signal(signal.SIGSTOP)  # A is frozen in the middle of step b
            b = WorkerProcess(url, tmp_path / "b.log", "--worker-id", "B", "--lease", LEASE)
            # A's lease expires and B takes the job over, resuming at b
            await poll_store(lambda: step_by(store, job_id, "b", "B"), timeout_s=30)
            a.proc.send_signal(signal.SIGCONT)  # A wakes up: its b ends, it emits, it writes
            await poll_store(lambda: _job_status(store, job_id, "completed"), timeout_s=30)
            await poll_store(lambda: _said(a, "lease_lost"), timeout_s=30)
            with b:
                assert b.terminate() == 0
            assert a.terminate() == 0
        job = await store.get(job_id)
        assert job is not None and job.worker_id == "B" and job.token == 2
        assert job.outputs is not None and len(job.outputs["c.out"]) == 1  # exactly once
        kinds = [e.kind for e in await store.events(job_id=job_id)]
        assert kinds == ["queued", "running", "stalled", "running", "completed"]
        # nothing A wrote after the takeover is in the store: not its b's end, not the
        # cancel that followed, not a step row
        records = await DurableJournal(store).records_of(job_id)
        assert not [r for r in records if r["t"] == "dl"]
        # (B's own end record is committed when its journal flushes between the job's end
        # and its completion, which a fast store makes likely; A's would be a second one)
        assert len([r for r in records if r["t"] == "end"]) <= 1
        done = [(r["routine"], r["attempt"]) for r in records if r["t"] == "done"]
        assert ("b", 1) not in done
        assert step_outcomes(await store.steps(job_id)) == [
            ("a", "completed", 1, "A"),
            ("b", "completed", 2, "B"),
            ("c", "completed", 1, "B"),
        ]
        out = a.output()
        assert "lease_lost" in out and job_id in out
        ran = [line.split(":", 1)[1] for line in steps_log.read_text().split()]
        assert ran[:3] == ["a:1", "b:1", "b:2"] and ran.count("c:1") <= 2
    finally:
        await store.close()


async def _job_status(store: Store, job_id: str, status: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status == status


async def _said(worker: WorkerProcess, what: str) -> bool:
    return what in worker.output()
