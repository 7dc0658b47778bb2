"""The soak: 2,000 jobs over 3 worker processes, one of them ``kill -9``-ed at random every
fraction of a second and started again: every job completes exactly once (0 lost, 0
duplicated), on SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from weirflow.durable import JobSpec, open_store

from .procs import WorkerProcess
from .soak import assert_each_done_once, kill_at_random, terminate_all, wait_finished

JOBS = 2000
WORKERS = 3
SOAK_TIMEOUT_S = 150.0
# kills come every few dozen jobs, so a fast run (a quiet machine, ~1,000 jobs/s) is still
# soaked; past MAX_KILLS the workers are left to finish, so a slow run stays in its time
MAX_KILLS = 20


@pytest.mark.slow
async def test_2000_jobs_under_random_kill_9_are_each_done_once(url: str, tmp_path: Path) -> None:
    rng = random.Random(11)
    store = open_store(url)
    await store.open()
    workers: dict[int, WorkerProcess] = {}
    restarts = Counter[int]()

    def start(n: int) -> None:
        restarts[n] += 1
        log = tmp_path / f"w{n}-{restarts[n]}.log"
        # the same worker id again: its start takes back what the killed run held at once
        workers[n] = WorkerProcess(
            url, log, "--worker-id", f"soak-{n}", "--lease", "5", "--concurrency", "8", "--max-stalls", "50"
        )

    try:
        specs = [
            JobSpec("noop", {"n.input": [i]}, idempotency_key=f"soak-{i}", max_attempts=50)
            for i in range(JOBS)
        ]
        ids = [job_id for job_id, _ in await store.submit_many(specs)]
        assert len(set(ids)) == JOBS
        for n in range(WORKERS):
            start(n)
        kills = await kill_at_random(
            store,
            workers,
            start,
            rng=rng,
            jobs=JOBS,
            max_kills=MAX_KILLS,
            every_jobs=(10, 60),
            timeout_s=SOAK_TIMEOUT_S,
        )
        await wait_finished(store, JOBS, timeout_s=SOAK_TIMEOUT_S)
        terminate_all(workers)
        assert kills >= 5, "the soak ended before it was soaked"
        jobs = await assert_each_done_once(store, ids, lambda job: {"n.output": [job.inputs["n.input"][0]]})
        assert sum(j.stalls for j in jobs) >= 1  # the kills did take jobs from workers
    finally:
        for w in workers.values():
            w.__exit__()
        await store.close()
