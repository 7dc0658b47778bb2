"""The soaks' parts: ``kill -9`` a random worker process every few jobs while they run, and
check that every job was done exactly once (0 lost, 0 duplicated)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from random import Random
from typing import Any

from weirflow.durable import JobRecord, Store

from .helpers import poll_store
from .procs import WorkerProcess


async def finished(store: Store) -> int:
    """How many jobs of the ``default`` queue have finished."""
    _, done = await store.finished_counts("default", 0.0)
    return done


async def wait_finished(store: Store, n: int, *, timeout_s: float) -> None:
    """Wait until ``n`` jobs have finished (``TimeoutError`` after ``timeout_s``)."""

    async def enough() -> bool:
        return await finished(store) >= n

    await poll_store(enough, timeout_s=timeout_s)


async def kill_at_random(
    store: Store,
    workers: Mapping[int, WorkerProcess],
    restart: Callable[[int], None],
    *,
    rng: Random,
    jobs: int,
    max_kills: int,
    every_jobs: tuple[int, int],
    timeout_s: float,
) -> int:
    """Until ``jobs`` have finished or ``max_kills`` kills are done: once the workers got on
    with it (a random number in ``every_jobs`` more jobs done since the last kill), a random
    moment later, ``kill -9`` one of ``workers`` (numbered from 0) at random and
    ``restart`` it. Fails if the jobs are not done within ``timeout_s``; the kills made."""
    kills = 0
    deadline = time.monotonic() + timeout_s
    while kills < max_kills and (done := await finished(store)) < jobs:
        assert time.monotonic() < deadline, f"the soak did not finish in time ({done} of {jobs} done)"
        try:
            await wait_finished(store, min(jobs, done + rng.randrange(*every_jobs)), timeout_s=timeout_s)
        except TimeoutError:
            continue
        await asyncio.sleep(rng.uniform(0.0, 0.05))  # (a random moment: this is the test's dice)
        if await finished(store) >= jobs:
            break
        n = rng.randrange(len(workers))
        workers[n].kill()
        kills += 1
        restart(n)
    return kills


def terminate_all(workers: Mapping[int, WorkerProcess]) -> None:
    """SIGTERM each worker: it exits 0 (or by the signal, if it was started so recently that
    it had not set up its SIGTERM handler yet)."""
    for w in workers.values():
        assert w.terminate() in (0, -signal.SIGTERM), w.output()[-2000:]


async def assert_each_done_once(
    store: Store, ids: Collection[str], outputs: Callable[[JobRecord], dict[str, Any]]
) -> list[JobRecord]:
    """The store holds the jobs ``ids`` and no other, each completed once, with
    ``outputs(job)`` as its outputs (each item delivered once); the jobs."""
    jobs = await store.list_jobs(limit=len(ids) * 2)
    assert len(jobs) == len(ids)  # nothing made twice
    assert Counter(j.status for j in jobs) == {"completed": len(ids)}  # nothing lost
    for job in jobs:
        assert job.outputs == outputs(job), job  # delivered once
    completions = Counter(e.job_id for e in await store.events(kind="completed"))
    assert set(completions) == set(ids) and set(completions.values()) == {1}
    return jobs
