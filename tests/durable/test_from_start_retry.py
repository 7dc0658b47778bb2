"""A ``retry(from_start=True)`` starts one run over, not every later one (review s19 D): the
run it started clears the journal once; a crash of that run is then resumed from its own
journal, like any other (completed steps are not run again), on SQLite, PostgreSQL and Redis,
with real worker processes and ``kill -9``."""

from __future__ import annotations

from pathlib import Path

import pytest

from weirflow.durable import JobSpec, Store, open_store
from weirflow.durable.journal import DurableJournal, decoded
from weirflow.runtime.replay import restore_from

from .flows import steps3
from .helpers import poll_store
from .procs import WorkerProcess

pytestmark = pytest.mark.slow


async def test_a_crash_after_a_from_start_retry_resumes_the_new_run(url: str, tmp_path: Path) -> None:
    steps_log = tmp_path / "steps.log"
    item = {"sleeps": {"a": 0.2, "b": 3.0, "c": 0.2}, "log": str(steps_log)}
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="steps3", inputs={"a.item": [item]}, max_attempts=5))
        with WorkerProcess(url, tmp_path / "a.log", "--worker-id", "A", "--lease", "2") as a:
            await poll_store(lambda: _ran(steps_log, "b:", 1), timeout_s=60)
            await store.cancel(job_id)
            await poll_store(lambda: _said(a, "lease_lost"), timeout_s=60)
            await store.retry(job_id, from_start=True)
            # the from-start run has done a again (what from_start asks), committed it, and is in b
            await poll_store(lambda: _ran(steps_log, "b:", 2), timeout_s=60)
            await poll_store(lambda: _steps_done(store, job_id, 1), timeout_s=60)
            # and its journal holds b's start (a start is committed with the next flush: a
            # kill before it makes B's run of b attempt 1 again)
            await poll_store(lambda: _journal_started(store, job_id, "b"), timeout_s=60)
            assert not await _ran(steps_log, "c:", 1)  # (b runs 3 s: the kill comes during it)
            a.kill()  # kill -9 during b
        with WorkerProcess(url, tmp_path / "b.log", "--worker-id", "B", "--lease", "2") as b:
            await poll_store(lambda: _completed(store, job_id), timeout_s=120)
            b.terminate()
        ran = [line.split(":", 1)[1] for line in steps_log.read_text().split()]
        # B resumes the from-start run's journal: a is done, b runs again as its attempt 2
        assert ran == ["a:1", "b:1", "a:1", "b:1", "b:2", "c:1"], ran
        job = await store.get(job_id)
        assert job is not None and (job.status, job.from_start) == ("completed", False)
    finally:
        await store.close()


async def _ran(log: Path, prefix: str, n: int) -> bool:
    if not log.exists():
        return False
    return sum(1 for line in log.read_text().split() if line.split(":", 1)[1].startswith(prefix)) >= n


async def _steps_done(store: Store, job_id: str, n: int) -> bool:
    """The store's journal of the job resumes it past ``n`` steps (what a taker would do)."""
    return restore_from(decoded(job_id, await store.read_journal(job_id)), steps3).steps_done >= n


async def _journal_started(store: Store, job_id: str, routine: str) -> bool:
    records = await DurableJournal(store).records_of(job_id)
    return any(r["t"] == "start" and r["routine"] == routine for r in records)


async def _said(w: WorkerProcess, what: str) -> bool:
    return what in w.output()


async def _completed(store: Store, job_id: str) -> bool:
    j = await store.get(job_id)
    return j is not None and j.status == "completed"
