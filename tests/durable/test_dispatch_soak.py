"""The dispatch soak: 2,000 jobs submitted with ``pool=`` to 3 ``weirflow worker --registry
... --store redis://`` nodes while one of them is ``kill -9``-ed at random every fraction of
a second: every job completes exactly once (0 lost, 0 duplicated), and no heartbeat ever
reports a node running past its capacity.

Half the killed nodes come back under the same id (their start takes back what they held
and their queued jobs wait for them); the other half come back as a new node, so the old
one's queued jobs are only run once a ``Reassigner`` gives them back to the pool (its
running ones once their leases run out)."""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

import weirflow as wf
from tests.durable.flows import one
from weirflow.cluster import Registry

from .helpers import poll_store
from .procs import WorkerProcess
from .test_dispatch_workers import heartbeats

JOBS = 2000
WORKERS = 3
CAPACITY = 40
CONCURRENCY = 4  # (below the capacity: a node holds queued jobs of its own, for the kills to strand)
SOAK_TIMEOUT_S = 100.0
MAX_KILLS = 12
SUBMITTERS = 8


def inputs_of(i: int) -> dict[str, list[dict[str, float]]]:
    # a short sleep keeps the nodes busy, so they hold queued jobs of their own when killed
    return {"a.item": [{"n": i, "sleep_s": 0.05}]}


async def _finished(store: wf.durable.Store) -> int:
    _, finished = await store.finished_counts("default", 0.0)
    return finished


async def _at_least(store: wf.durable.Store, n: int) -> bool:
    return await _finished(store) >= n


@pytest.mark.slow
async def test_2000_dispatched_jobs_under_random_kill_9_are_each_done_once(
    redis_url: str, tmp_path: Path
) -> None:
    rng = random.Random(23)
    registry = Registry(redis_url, deadline_s=1.0)
    await registry.start()
    engine = wf.Engine(store=redis_url, registry=registry)
    engine.register(one)
    workers: dict[int, WorkerProcess] = {}
    names: dict[int, str] = {}
    generation = Counter[int]()
    kills = 0

    def start(n: int, *, new_id: bool) -> None:
        if new_id or n not in names:
            generation[n] += 1
            names[n] = f"node-{n}-{generation[n]}"
        log = tmp_path / f"{names[n]}-{kills}.log"
        workers[n] = WorkerProcess(
            redis_url,
            log,
            *("--worker-id", names[n], "--registry", redis_url, "--capacity", str(CAPACITY)),
            *("--concurrency", str(CONCURRENCY), "--lease", "3", "--max-stalls", "50"),
        )

    async def submit(lane: int) -> list[str]:
        return [
            await engine.submit("one", inputs_of(i), pool="default", idempotency_key=f"soak-{i}", attempts=50)
            for i in range(lane, JOBS, SUBMITTERS)
        ]

    try:
        async with engine:
            store = engine.store
            assert store is not None
            for n in range(WORKERS):
                start(n, new_id=False)
            await registry.wait_for(lambda: len(registry.nodes("default")) == WORKERS, timeout_s=30)
            submitting = asyncio.gather(*(submit(lane) for lane in range(SUBMITTERS)))
            deadline = time.monotonic() + SOAK_TIMEOUT_S
            while kills < MAX_KILLS and (done := await _finished(store)) < JOBS:
                assert time.monotonic() < deadline, f"the soak did not finish in time ({done} of {JOBS} done)"
                more = min(JOBS, done + rng.randrange(20, 120))
                try:
                    await poll_store(functools.partial(_at_least, store, more), timeout_s=SOAK_TIMEOUT_S)
                except TimeoutError:
                    continue
                await asyncio.sleep(rng.uniform(0.0, 0.05))  # (a random moment: this is the test's dice)
                n = rng.randrange(WORKERS)
                workers[n].kill()
                kills += 1
                start(n, new_id=kills % 2 == 0)
            ids = [job_id for lane in await submitting for job_id in lane]
            assert len(set(ids)) == JOBS
            await poll_store(functools.partial(_at_least, store, JOBS), timeout_s=SOAK_TIMEOUT_S)
            for w in workers.values():
                assert w.terminate() in (0, -signal.SIGTERM), w.output()[-2000:]
            assert kills >= 5, "the soak ended before it was soaked"
            jobs = await store.list_jobs(limit=JOBS * 2)
            assert len(jobs) == JOBS  # nothing made twice
            assert Counter(j.status for j in jobs) == {"completed": JOBS}  # nothing lost
            for job in jobs:
                assert job.outputs == {"a.out": job.inputs["a.item"]}, job  # delivered once
                assert job.node is not None and job.node == job.worker_id  # it ran on its node
            completions = Counter(e.job_id for e in await store.events(kind="completed"))
            assert set(completions) == set(ids) and set(completions.values()) == {1}
            assert engine.dispatcher is not None and engine.dispatcher.placed >= CAPACITY
            # (not asserted: that a new-id restart stranded queued jobs for the Reassigner. A
            # quiet run ended with 0 'reassigned' events and every job done once; the Reassigner
            # itself is checked in test_dispatch_workers.py. Open question in the session note.)
        beats = [n for n in await heartbeats(redis_url) if n.state == "up"]
        assert max(b.running for b in beats) >= 1
        assert all(b.running <= b.capacity == CAPACITY for b in beats), [(b.id, b.running) for b in beats]
    finally:
        for w in workers.values():
            w.__exit__()
        await registry.close()
