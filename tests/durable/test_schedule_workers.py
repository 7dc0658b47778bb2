"""Workers fire schedules: one job per tick with several workers (in this process on every
backend, and as 3 ``weirflow worker`` processes on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

import weirflow as wf
from weirflow.durable import Store, open_store
from weirflow.durable.schedules import KEY_PREFIX, Schedule
from weirflow.durable.worker import Worker

from . import flows
from .conftest import StoreFactory
from .helpers import poll_store, until
from .procs import WorkerProcess, cli


async def scheduled(store: Store, name: str) -> dict[str, list[str]]:
    """The jobs each tick of schedule ``name`` made, by key (``status`` of each)."""
    by_key: dict[str, list[str]] = {}
    for job in await store.list_jobs(limit=1000):
        if job.idempotency_key and job.idempotency_key.startswith(f"{KEY_PREFIX}{name}:"):
            by_key.setdefault(job.idempotency_key, []).append(job.status)
    return by_key


def completed(by_key: dict[str, list[str]]) -> int:
    return sum(statuses.count("completed") for statuses in by_key.values())


async def test_three_workers_make_one_job_per_tick(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]  # a connection each (one store on memory)
    await stores[0].add_schedule(Schedule(name="beat", flow="noop", inputs={"n.input": [1]}, every_s=1))
    async with AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(Worker(s, [flows.noop], worker_id=f"w{i}", poll_max_s=0.2))
            for i, s in enumerate(stores)
        ]

        async def two_ticks_done() -> bool:
            return completed(await scheduled(stores[0], "beat")) >= 2

        await until(two_ticks_done, *workers, timeout_s=20)
    by_key = await scheduled(stores[0], "beat")
    assert all(len(statuses) == 1 for statuses in by_key.values()), by_key  # one job per tick
    [s] = await stores[0].list_schedules()
    assert s.last_job_id is not None and s.next_at > (s.last_at or 0)


async def test_a_new_schedule_wakes_an_idle_worker(store_url: str) -> None:
    engine = wf.Engine(store=store_url)
    engine.register(flows.noop)
    async with engine:
        assert engine.store is not None
        async with Worker(engine.store, engine, poll_max_s=0.2) as worker:
            # the worker's scheduler sleeps (up to a minute) with nothing scheduled; adding a
            # schedule wakes it, so the first tick's job is made at its time
            stored = await engine.schedule("soon", "noop", {"n.input": ["x"]}, every_s=1)
            assert stored.last_job_id is None
            assert [s.name for s in await engine.schedules()] == ["soon"]
            store = engine.store

            async def one_done() -> bool:
                return completed(await scheduled(store, "soon")) >= 1

            await until(one_done, worker, timeout_s=10)
            [s] = await engine.schedules()
            assert s.last_job_id is not None
            info = await engine.wait_job(s.last_job_id, timeout_s=10)
            assert info.status == "completed" and info.outputs == {"n.output": ["x"]}
            assert await engine.unschedule("soon") is True
            assert await engine.unschedule("soon") is False
            with pytest.raises(wf.ScheduleError, match="bad cron expression"):
                await engine.schedule("bad", "noop", cron="not a cron")
            with pytest.raises(wf.JobError, match="no slot"):
                await engine.schedule("bad", "noop", {"x.y": [1]}, every_s=60)


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
async def test_three_worker_processes_fire_each_tick_once(store_url: str, tmp_path: Path) -> None:
    added = cli(
        "schedules", "add", "beat", "noop", "-i", "n.input=1", "--every", "1", "--store", store_url, "--json"
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["every_s"] == 1
    store = open_store(store_url)
    await store.open()
    try:
        procs = [WorkerProcess(store_url, tmp_path / f"w{i}.log", "--worker-id", f"w{i}") for i in range(3)]
        try:

            async def four_ticks_done() -> bool:
                return completed(await scheduled(store, "beat")) >= 4

            await poll_store(four_ticks_done, timeout_s=60)  # other processes' work: poll the store
        finally:
            for p in procs:
                p.terminate()
        by_key = await scheduled(store, "beat")
        assert len(by_key) >= 4 and all(len(statuses) == 1 for statuses in by_key.values()), by_key
        listed = cli("schedules", "list", "--store", store_url, "--json")
        [doc] = json.loads(listed.stdout)
        assert doc["name"] == "beat" and doc["last_job_id"] is not None
        assert cli("schedules", "remove", "beat", "--store", store_url).returncode == 0
        bad = cli("schedules", "add", "x", "noop", "--cron", "61 * * * *", "--store", store_url)
        assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
            "error: schedule 'x': bad cron expression '61 * * * *': Bad minute"
        ]
    finally:
        await store.close()
