"""Jobs dispatched to real ``weirflow worker --registry ... --store redis://`` processes:
no node ever runs past its capacity (every heartbeat in the registry's log says so), and
a ``kill -9``ed node's queued jobs run on another node."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import weirflow as wf
from tests.durable.flows import one
from tests.durable.procs import WorkerProcess
from weirflow.cluster import Registry
from weirflow.cluster.keys import DEFAULT_PREFIX, Keys
from weirflow.cluster.node import decode


@pytest.fixture
async def registry(redis_url: str) -> AsyncIterator[Registry]:
    reg = Registry(redis_url, deadline_s=1.0)
    await reg.start()
    yield reg
    await reg.close()


@pytest.fixture
def workers() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def node_worker(
    stack: ExitStack, store: str, registry: str, tmp_path: Path, name: str, *, capacity: int, concurrency: int
) -> WorkerProcess:
    args = ["--registry", registry, "--pool", "gpu", "--queue", "gpu", "--worker-id", name]
    args += ["--capacity", str(capacity), "--concurrency", str(concurrency), "--lease", "2"]
    args += ["--shutdown-grace", "0.2"]
    return stack.enter_context(WorkerProcess(store, tmp_path / f"{name}.log", *args))


async def heartbeats(url: str) -> list[wf.cluster.Node]:
    """Every record in the registry's change log: each register and heartbeat of a node."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        entries = await client.xrange(Keys(DEFAULT_PREFIX).log)
    finally:
        await client.aclose()
    return [decode(fields) for _, fields in entries]


async def wait_up(registry: Registry, *names: str) -> None:
    def up() -> bool:
        return all((n := registry.get(name)) is not None and n.state == "up" for name in names)

    await registry.wait_for(up, timeout_s=30)


@pytest.mark.slow  # worker processes: several seconds on 2 cores
async def test_dispatched_jobs_never_run_past_a_nodes_capacity(
    tmp_path: Path, redis_url: str, registry: Registry, workers: ExitStack
) -> None:
    for name in ("n-a", "n-b"):
        node_worker(workers, redis_url, redis_url, tmp_path, name, capacity=2, concurrency=4)
    await wait_up(registry, "n-a", "n-b")
    engine = wf.Engine(store=redis_url, registry=registry)
    engine.register(one)
    async with engine:
        ids = [
            # (long enough that heartbeats, about one a second, see jobs running)
            await engine.submit("one", {"a.item": [{"sleep_s": 0.5}]}, pool="gpu", attempts=1)
            for _ in range(16)
        ]
        infos = await asyncio.gather(*(engine.wait_job(i, timeout_s=60) for i in ids))
        assert [i.status for i in infos] == ["completed"] * 16
        store = engine.store
        assert store is not None
        for job_id in ids:
            record = await store.get(job_id)
            assert record is not None and record.node in ("n-a", "n-b") and record.worker_id == record.node
            kinds = Counter(e.kind for e in await store.events(job_id=job_id))
            assert (kinds["running"], kinds["completed"]) == (1, 1)
    beats = [n for n in await heartbeats(redis_url) if n.id in ("n-a", "n-b") and n.state == "up"]
    assert max(b.running for b in beats) >= 1  # (the beats did see jobs running)
    assert all(b.running <= b.capacity == 2 for b in beats), [(b.id, b.running) for b in beats]


@pytest.mark.slow  # worker processes and a node's expiry: several seconds on 2 cores
async def test_a_killed_nodes_queued_jobs_run_on_another_node(
    tmp_path: Path, redis_url: str, registry: Registry, workers: ExitStack
) -> None:
    victim = node_worker(workers, redis_url, redis_url, tmp_path, "n-a", capacity=4, concurrency=1)
    node_worker(workers, redis_url, redis_url, tmp_path, "n-b", capacity=4, concurrency=1)
    await wait_up(registry, "n-a", "n-b")
    engine = wf.Engine(store=redis_url, registry=registry)
    engine.register(one)
    async with engine:
        store = engine.store
        assert store is not None
        # both nodes are empty: ties go to the id, so n-a is given its 4 slots
        # (the first, claimed first, runs long enough to be running when n-a is killed)
        ids = [
            await engine.submit("one", {"a.item": [{"sleep_s": 3.0 if i == 0 else 0.3}]}, pool="gpu")
            for i in range(4)
        ]
        assert [(await store.get(i)).node for i in ids] == ["n-a"] * 4  # type: ignore[union-attr]
        await registry.wait_for(
            lambda: (n := registry.get("n-a")) is not None and n.running == 1, timeout_s=30
        )
        victim.kill()  # kill -9: one job running, three queued on it
        infos = await asyncio.gather(*(engine.wait_job(i, timeout_s=60) for i in ids))
        assert [i.status for i in infos] == ["completed"] * 4
        moved = 0
        for job_id in ids:
            record = await store.get(job_id)
            assert record is not None and (record.node, record.worker_id) == ("n-b", "n-b")
            events = await store.events(job_id=job_id)
            kinds = Counter(e.kind for e in events)
            assert kinds["completed"] == 1
            moved += kinds["reassigned"]
            if kinds["reassigned"]:
                assert [e.data for e in events if e.kind == "reassigned"] == [{"node": "n-a"}]
            else:  # the one n-a was running: its lease ran out, it stalled, n-b took it
                assert kinds["stalled"] == 1
        assert moved == 3
