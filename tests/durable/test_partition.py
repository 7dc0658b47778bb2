"""A worker cut off from its store (a network partition: its connections stay open and
nothing arrives) stops its running job by itself before its lease can run out in the
store, so the worker that takes the job over never runs it alongside the first one.

The store cannot tell a worker cut off from it from a dead one: once the lease has run
out, another worker takes the job. Fencing refuses the cut-off worker's late writes, but
only the worker itself can stop its running step in time; it counts the lease from when
its last renewal was sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from weirflow.durable import JobSpec, Store, open_store

from .helpers import poll_store
from .pgserver import PgServer
from .procs import WorkerProcess
from .tcpproxy import PartitionProxy

pytestmark = pytest.mark.slow

LEASE_S = 4.0  # (a margin of 0.4 s: room for a loaded machine)


@pytest.fixture(params=["postgres", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    server: PgServer = request.getfixturevalue("pg")
    return server.new_database()


@pytest.fixture
async def proxy(url: str) -> AsyncIterator[PartitionProxy]:
    p = PartitionProxy(url)
    yield p
    p.heal()
    await p.close()


def _lines(log: Path, kind: str) -> list[list[str]]:
    """The ``kind`` lines of the steps log (``flows.py``), split on ``:``."""
    if not log.exists():
        return []
    return [line.split(":") for line in log.read_text().split() if line.startswith(f"{kind}:")]


async def _started(log: Path, calls: int) -> bool:
    return len(_lines(log, "start")) >= calls


async def _holds(store: Store, job_id: str, worker: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status == "running" and job.worker_id == worker


async def _completed(store: Store, job_id: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status == "completed"


async def test_a_worker_cut_off_from_the_store_stops_its_job_before_another_takes_it(
    url: str, proxy: PartitionProxy, tmp_path: Path
) -> None:
    steps_log = tmp_path / "steps.log"
    # the first call would run for a minute; the one after the takeover is short
    item = {
        "first_sleep_s": 60.0,
        "first_sleep_once": str(tmp_path / "slept"),
        "sleep_s": 0.2,
        "log": str(steps_log),
        "times": True,
        "stops": True,
    }
    via_proxy = await proxy.start()
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="one", inputs={"a.item": [item]}, max_attempts=3))
        args = ("--lease", str(LEASE_S))
        with WorkerProcess(via_proxy, tmp_path / "a.log", "--worker-id", "A", *args) as a:
            await poll_store(lambda: _holds(store, job_id, "A"), timeout_s=30)
            await poll_store(lambda: _started(steps_log, 1), timeout_s=30)
            with WorkerProcess(url, tmp_path / "b.log", "--worker-id", "B", *args) as b:
                proxy.cut()  # A hears nothing from the store from now on, and the store nothing from A
                await poll_store(lambda: _started(steps_log, 2), timeout_s=60)  # B took it over
                await poll_store(lambda: _completed(store, job_id), timeout_s=30)
                proxy.heal()
                await poll_store(lambda: _said(a, "lease_lost"), timeout_s=30)
                # (in threads: this loop runs the proxy A's shutdown goes through)
                assert await asyncio.to_thread(b.terminate) == 0
            assert await asyncio.to_thread(a.terminate) == 0
        # (B's attempt is the first the journal knows of when A's start had not reached it)
        [stop] = _lines(steps_log, "stop")  # A's call, stopped by A itself
        assert int(stop[4]) == a.proc.pid
        first, second = _lines(steps_log, "start")
        assert (int(first[4]), int(second[4])) == (a.proc.pid, b.proc.pid)
        assert float(stop[6]) < float(second[5])  # never two attempts at once
        job = await store.get(job_id)
        assert job is not None and job.outputs is not None and len(job.outputs["a.out"]) == 1
        assert job.worker_id == "B"
        assert [e.kind for e in await store.events(job_id=job_id)].count("completed") == 1
        assert "no renewal of its 4s lease reached the store in time" in a.output()
    finally:
        await store.close()


async def _said(worker: WorkerProcess, text: str) -> bool:
    return text in worker.output()
