"""Recovery users do not notice, with worker processes on SQLite and PostgreSQL: a job
whose worker died keeps its place in the queue, ahead of the backlog queued after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from weirflow.durable import JobSpec, Store, open_store
from weirflow.durable.store import TAKEOVER_CHECK_S

from .helpers import poll_store
from .procs import WorkerProcess

LEASE_S = 1.5
BACKLOG = 40


async def running_by(store: Store, job_id: str, worker: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status == "running" and job.worker_id == worker


@pytest.mark.slow
async def test_a_stalled_job_is_taken_over_before_the_backlog_behind_it(url: str, tmp_path: Path) -> None:
    store = open_store(url)
    await store.open()
    try:
        first = await store.submit(JobSpec(flow="one", inputs={"a.item": [{"first_sleep_s": 30}]}))
        with WorkerProcess(url, tmp_path / "w1.log", "--worker-id", "w1", "--lease", str(LEASE_S)) as w1:
            await poll_store(lambda: running_by(store, first, "w1"), timeout_s=30)
            w1.kill()
        held = await store.get(first)
        assert held is not None and held.lease_expires_at is not None
        expires = held.lease_expires_at
        backlog = [
            await store.submit(JobSpec(flow="one", inputs={"a.item": [{"sleep_s": 0.1}]}))
            for _ in range(BACKLOG)
        ]
        args = ("--worker-id", "w2", "--lease", str(LEASE_S), "--concurrency", "1")
        with WorkerProcess(url, tmp_path / "w2.log", *args) as w2:

            async def all_done() -> bool:
                jobs = [await store.get(j) for j in (first, *backlog)]
                return all(j is not None and j.status == "completed" for j in jobs)

            await poll_store(all_done, timeout_s=90)
            assert w2.terminate() == 0
        claims = []
        for job_id in (first, *backlog):
            claims += [
                (e.at, job_id)
                for e in await store.events(job_id=job_id, kind="running")
                if e.data.get("worker") == "w2"
            ]
        claims.sort()
        # once its lease had expired (and the claims' next look for expired leases came),
        # the next claim took it: it did not wait behind the jobs queued after it
        retaken = next(at for at, job_id in claims if job_id == first)
        later = [at for at, _ in claims if at > expires + TAKEOVER_CHECK_S + 0.5]
        assert not later or retaken <= later[0], (expires, retaken, claims[:5])
        assert sum(1 for at, _ in claims if at < retaken) < BACKLOG // 2
        job = await store.get(first)
        assert job is not None and (job.attempt, job.stalls) == (2, 1)
    finally:
        await store.close()
