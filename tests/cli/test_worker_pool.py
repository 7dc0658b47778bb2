"""``weirflow worker --registry R --pool P`` without ``--queue`` serves the queue that
``engine.submit(..., pool=P)`` puts its jobs in (review finding: it served ``default``,
so dispatched jobs were never claimed and filled the node's capacity)."""

from __future__ import annotations

from pathlib import Path

import pytest

import weirflow as wf
from tests.durable.flows import one
from tests.durable.procs import WorkerProcess
from weirflow.cluster import Registry


@pytest.mark.slow  # a worker process: a few seconds on 2 cores
async def test_a_pool_worker_without_queue_runs_the_pools_dispatched_jobs(
    tmp_path: Path, redis_url: str
) -> None:
    registry = Registry(redis_url, deadline_s=1.0)
    await registry.start()
    args = ["--registry", redis_url, "--pool", "gpu", "--worker-id", "n-gpu", "--capacity", "2"]
    worker = WorkerProcess(redis_url, tmp_path / "worker.log", *args, "--shutdown-grace", "0.2")
    try:
        await registry.wait_for(
            lambda: (n := registry.get("n-gpu")) is not None and n.state == "up", timeout_s=30
        )
        engine = wf.Engine(store=redis_url, registry=registry)
        engine.register(one)
        async with engine:
            submit = engine.submit
            ids = [await submit("one", {"a.item": [{"n": i}]}, pool="gpu", attempts=1) for i in range(3)]
            infos = [await engine.wait_job(i, timeout_s=60) for i in ids]
        assert [i.status for i in infos] == ["completed"] * 3, worker.output()
        assert "queue 'gpu'" in worker.output()
    finally:
        assert worker.terminate() == 0, worker.output()
        await registry.close()
