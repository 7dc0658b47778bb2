"""The dispatch soak: 2,000 jobs submitted with ``pool=`` to 3 ``weirflow worker --registry
... --store redis://`` nodes while one of them is ``kill -9``-ed every fraction of a second:
every job completes exactly once (0 lost, 0 duplicated), and no heartbeat ever reports a
node running past its capacity.

Half the killed nodes come back under the same id (their start takes back what they held
and their queued jobs wait for them); the other half come back as a new node, so the old
one's queued jobs are only run once a ``Reassigner`` gives them back to the pool (its
running ones once their leases run out).

Jobs only wait queued on a node while they are being submitted: a submit assigns a job to
a node with room, or queues it unassigned when none has, and a worker takes its own jobs
first. So the submitters keep ``WINDOW`` jobs in flight (fewer than the nodes' capacity,
more than they run at once) for the whole soak, and a new-id kill is made at a moment
the store shows the victim holding queued jobs of its own: the jobs still queued on it
after the kill are stranded, and must each be reassigned and completed once elsewhere."""

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
# (below the capacity: a node holds queued jobs of its own, for the kills to strand)
CONCURRENCY = 4
# jobs submitted and not yet finished: below the nodes' capacity (so submits find room and
# assign), well above what they run at once (so each node holds queued jobs of its own)
WINDOW = 90
SOAK_TIMEOUT_S = 100.0
MAX_KILLS = 12
SUBMITTERS = 8


def inputs_of(i: int) -> dict[str, list[dict[str, float]]]:
    # a short sleep keeps the nodes busy, so they hold queued jobs of their own when killed
    return {"a.item": [{"n": i, "sleep_s": 0.1}]}


async def _finished(store: wf.durable.Store) -> int:
    _, finished = await store.finished_counts("default", 0.0)
    return finished


async def _at_least(store: wf.durable.Store, n: int) -> bool:
    return await _finished(store) >= n


async def queued_on(store: wf.durable.Store, node: str) -> list[str]:
    """The queued jobs assigned to ``node`` (which only it may claim)."""
    queued = await store.list_jobs(queue="default", status="queued", limit=JOBS)
    return [j.id for j in queued if j.node == node]


async def _holders(store: wf.durable.Store, nodes: list[str], holding: set[str]) -> bool:
    """Whether one of ``nodes`` holds queued jobs of its own; ``holding`` is set to those that do."""
    queued = await store.list_jobs(queue="default", status="queued", limit=JOBS)
    holding.clear()
    holding.update(j.node for j in queued if j.node in nodes)
    return bool(holding)


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
    stranded: dict[str, str] = {}  # job id -> the killed node (restarted under a new id) it was queued on
    window = asyncio.Semaphore(WINDOW)
    waiters: set[asyncio.Task[None]] = set()
    holding: set[str] = set()

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

    async def finished(job_id: str) -> None:
        try:
            await engine.wait_job(job_id, timeout_s=SOAK_TIMEOUT_S)
        finally:
            window.release()

    async def submit(lane: int) -> list[str]:
        ids = []
        for i in range(lane, JOBS, SUBMITTERS):
            await window.acquire()
            job_id = await engine.submit(
                "one", inputs_of(i), pool="default", idempotency_key=f"soak-{i}", attempts=50
            )
            ids.append(job_id)
            task = asyncio.create_task(finished(job_id))
            waiters.add(task)
            task.add_done_callback(waiters.discard)
        return ids

    try:
        async with engine:
            store = engine.store
            assert store is not None
            for n in range(WORKERS):
                start(n, new_id=False)
            await registry.wait_for(lambda: len(registry.nodes("default")) == WORKERS, timeout_s=30)
            submitting = asyncio.gather(*(submit(lane) for lane in range(SUBMITTERS)))
            deadline = time.monotonic() + SOAK_TIMEOUT_S
            # (kills stop while jobs are still to be submitted: a new-id kill waits for its
            # victim to hold queued jobs, which only submits give it)
            last_kill_at = JOBS - 2 * WINDOW
            while kills < MAX_KILLS and (done := await _finished(store)) < last_kill_at:
                assert time.monotonic() < deadline, f"the soak did not finish in time ({done} of {JOBS} done)"
                more = min(last_kill_at, done + rng.randrange(20, 120))
                await poll_store(functools.partial(_at_least, store, more), timeout_s=SOAK_TIMEOUT_S)
                new_id = kills % 2 == 0
                if new_id:  # a moment a node holds queued jobs of its own: the victim is one of them
                    await poll_store(
                        functools.partial(_holders, store, list(names.values()), holding),
                        timeout_s=30,
                        every_s=0.01,
                    )
                    n = rng.choice([k for k, name in names.items() if name in holding])
                else:
                    n = rng.randrange(WORKERS)
                    await asyncio.sleep(rng.uniform(0.0, 0.05))  # (a random moment: this is the test's dice)
                workers[n].kill()
                kills += 1
                if new_id:  # (nothing claims them now: only their node may, until they are reassigned)
                    stranded.update(dict.fromkeys(await queued_on(store, names[n]), names[n]))
                start(n, new_id=new_id)
            ids = [job_id for lane in await submitting for job_id in lane]
            assert len(set(ids)) == JOBS
            await poll_store(functools.partial(_at_least, store, JOBS), timeout_s=SOAK_TIMEOUT_S)
            await asyncio.gather(*waiters)
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
            # the new-id kills stranded queued jobs, and each was given back once and run elsewhere
            assert stranded, "no new-id kill stranded a queued job"
            reassigned = await store.events(kind="reassigned")
            assert len(reassigned) >= 1
            moved = Counter((e.job_id, e.data["node"]) for e in reassigned)
            by_id = {j.id: j for j in jobs}
            for job_id, node in stranded.items():
                assert moved[job_id, node] == 1, (job_id, node)
                assert by_id[job_id].node != node and completions[job_id] == 1
        beats = [n for n in await heartbeats(redis_url) if n.state == "up"]
        assert max(b.running for b in beats) >= 1
        assert all(b.running <= b.capacity == CAPACITY for b in beats), [(b.id, b.running) for b in beats]
    finally:
        for w in workers.values():
            w.__exit__()
        for task in waiters:
            task.cancel()
        await registry.close()
