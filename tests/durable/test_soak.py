"""The soak: 2,000 jobs over 3 worker processes, one of them ``kill -9``-ed at random every
fraction of a second and started again: every job completes exactly once (0 lost, 0
duplicated), on SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from weirflow.durable import JobSpec, Store, open_store

from .helpers import poll_store
from .procs import WorkerProcess

JOBS = 2000
WORKERS = 3
SOAK_TIMEOUT_S = 150.0
# kills come every few dozen jobs, so a fast run (a quiet machine, ~1,000 jobs/s) is still
# soaked; past MAX_KILLS the workers are left to finish, so a slow run stays in its time
MAX_KILLS = 20


async def _finished(store: Store) -> int:
    _, finished = await store.finished_counts("default", 0.0)
    return finished


async def _at_least(store: Store, n: int) -> bool:
    return await _finished(store) >= n


async def _all_done(store: Store) -> bool:
    return await _finished(store) >= JOBS


@pytest.mark.slow
async def test_2000_jobs_under_random_kill_9_are_each_done_once(url: str, tmp_path: Path) -> None:
    rng = random.Random(11)
    store = open_store(url)
    await store.open()
    workers: dict[int, WorkerProcess] = {}
    restarts = Counter[int]()
    kills = 0

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
        deadline = time.monotonic() + SOAK_TIMEOUT_S
        while (done := await _finished(store)) < JOBS:
            assert time.monotonic() < deadline, f"the soak did not finish in time ({done} of {JOBS} done)"
            # once the workers got on with it (a few more jobs done since the last kill),
            # kill -9 one of them at random, a random moment later, and start it again
            if kills >= MAX_KILLS:
                await poll_store(functools.partial(_all_done, store), timeout_s=SOAK_TIMEOUT_S)
                break
            more = min(JOBS, done + rng.randrange(10, 60))
            try:
                await poll_store(functools.partial(_at_least, store, more), timeout_s=SOAK_TIMEOUT_S)
            except TimeoutError:
                continue
            await asyncio.sleep(rng.uniform(0.0, 0.05))  # (a random moment: this is the test's dice)
            if await _all_done(store):
                break
            n = rng.randrange(WORKERS)
            workers[n].kill()
            kills += 1
            start(n)
        for w in workers.values():  # (one started just now may not have set up its SIGTERM handler yet)
            assert w.terminate() in (0, -signal.SIGTERM), w.output()[-2000:]
        assert kills >= 5, "the soak ended before it was soaked"
        jobs = await store.list_jobs(limit=JOBS * 2)
        assert len(jobs) == JOBS  # nothing made twice
        assert Counter(j.status for j in jobs) == {"completed": JOBS}  # nothing lost
        for job in jobs:
            assert job.outputs == {"n.output": [job.inputs["n.input"][0]]}, job  # delivered once
        completions = Counter(e.job_id for e in await store.events(kind="completed"))
        assert set(completions) == set(ids) and set(completions.values()) == {1}
        assert sum(j.stalls for j in jobs) >= 1  # the kills did take jobs from workers
    finally:
        for w in workers.values():
            w.__exit__()
        await store.close()
