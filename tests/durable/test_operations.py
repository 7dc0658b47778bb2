"""Recovery, sweeping, shutdown, alerts and the engine's submit/get_job, on every backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

import weirflow as wf
from weirflow.durable import open_store
from weirflow.durable.alerts import AlertRules
from weirflow.durable.worker import Worker

from .conftest import StoreFactory
from .helpers import job_is, until
from .test_worker import FLOWS, finished, job, workers


async def test_a_worker_recovers_its_own_jobs_at_start(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(job("one"))
    claim = await store.claim("default", "fixed-id", limit=1, lease_s=3600)  # "crashed" holding it
    assert [j.id for j in claim.jobs] == [job_id]
    async with workers(store, worker_id="fixed-id") as [w]:
        await until(finished(store, job_id), w)
    record = await store.get(job_id)
    # the crash counted as an attempt: the job ran its second
    assert record is not None and (record.status, record.stalls, record.attempt) == ("completed", 1, 2)


async def test_the_sweeper_requeues_an_expired_lease(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(job("one"))
    await store.claim("default", "ghost", limit=1, lease_s=0.3)  # a worker that died
    async with workers(store, sweep_every_s=0.1) as [w]:
        await until(finished(store, job_id), w, timeout_s=15)
    record = await store.get(job_id)
    assert record is not None and (record.status, record.stalls, record.worker_id) == ("completed", 1, "w0")
    assert [e.kind for e in await store.events(job_id=job_id)] == [
        "queued",
        "running",
        "stalled",
        "running",
        "completed",
    ]


async def test_stop_gives_running_jobs_back(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(job("one", {"sleep_s": 60}))
    w = Worker(store, FLOWS, worker_id="w0", shutdown_grace_s=0.1)
    async with w:
        await until(lambda: job_is(store, job_id, "running"), w)
    record = await store.get(job_id)
    assert record is not None and (record.status, record.attempt, record.stalls) == ("queued", 0, 0)
    assert "released" in [e.kind for e in await store.events(job_id=job_id)]


async def test_stop_lets_short_jobs_finish(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(job("one", {"sleep_s": 0.3}))
    w = Worker(store, FLOWS, worker_id="w0", shutdown_grace_s=30)
    async with w:
        await until(lambda: job_is(store, job_id, "running"), w)
    assert await job_is(store, job_id, "completed")


async def test_an_unknown_flow_fails_without_retry(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(job("nope"))
    async with workers(store) as [w]:
        await until(finished(store, job_id), w)
    record = await store.get(job_id)
    assert record is not None and (record.status, record.attempt) == ("failed", 1)
    assert "no flow named 'nope'" in (record.error or "")


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, object]]]]:
    """A real HTTP receiver on loopback: every POSTed JSON body lands in the queue."""
    received: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = await reader.readexactly(length)
        await received.put(json.loads(body))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/alerts", received


async def test_long_running_alert(
    make_store: StoreFactory, webhook: tuple[str, asyncio.Queue[dict[str, object]]]
) -> None:
    url, received = webhook
    store = await make_store()
    job_id = await store.submit(job("one", {"sleep_s": 60}))
    rules = AlertRules(long_running_s=0.2, webhook_url=url)
    async with workers(store, sweep_every_s=0.1, alerts=rules, shutdown_grace_s=0):
        alert = await asyncio.wait_for(received.get(), 15)
    assert alert["kind"] == "alert.long_running" and alert["job_id"] == job_id
    assert alert["data"]["attempt"] == 1 and alert["data"]["running_s"] >= 0.2  # type: ignore[index]
    assert received.empty()  # once per attempt
    [event] = await store.events(kind="alert.long_running")
    assert event.job_id == job_id


async def test_failure_rate_alert(
    make_store: StoreFactory, webhook: tuple[str, asyncio.Queue[dict[str, object]]]
) -> None:
    url, received = webhook
    store = await make_store()
    for i in range(6):
        await store.submit(job("one", {"fail": i % 3 != 0}, max_attempts=1))
    rules = AlertRules(failure_rate=0.5, failure_window_s=60, failure_min_jobs=5, webhook_url=url)
    async with workers(store, concurrency=6, sweep_every_s=0.1, alerts=rules):
        alert = await asyncio.wait_for(received.get(), 15)
    assert alert["kind"] == "alert.failure_rate" and alert["job_id"] is None
    data = alert["data"]
    assert data["threshold"] == 0.5 and data["rate"] > 0.5  # type: ignore[index,operator]
    assert len(await store.events(kind="alert.failure_rate")) == 1


async def test_engine_submit_and_get_job(store_url: str) -> None:
    async with wf.Engine(store=store_url) as engine:
        for flow in FLOWS:
            engine.register(flow)
        ids = await asyncio.gather(
            *(engine.submit("steps3", {"a.item": [{"n": 1}]}, idempotency_key="order-42") for _ in range(20))
        )
        assert len(set(ids)) == 1
        info = await engine.get_job(ids[0])
        assert (info.id, info.flow, info.status, info.attempt, info.error, info.steps) == (
            ids[0],
            "steps3",
            "queued",
            0,
            None,
            [],
        )
        assert engine.store is not None
        async with Worker(engine.store, engine, worker_id="w0") as w:
            await until(finished(engine.store, ids[0]), w)
        info = await engine.get_job(ids[0])
        assert info.status == "completed" and [s.routine for s in info.steps] == ["a", "b", "c"]
        assert info.to_dict()["steps"][0].keys() == {
            "routine",
            "seq",
            "status",
            "attempt",
            "progress",
            "message",
            "started_at",
            "completed_at",
            "error",
            "worker",
            "traceback",
        }
        assert (info.outputs, info.dead_letters) == ({"c.out": [{"n": 1}]}, [])
        with pytest.raises(wf.JobError, match="no flow named 'missing'"):
            await engine.submit("missing", {})
        with pytest.raises(wf.JobError, match=r"has no slot 'x\.y'"):
            await engine.submit("one", {"x.y": [1]})
        with pytest.raises(wf.JobError, match=r'inputs\["a.item"\]\[0\]: a value of type set is not JSON'):
            await engine.submit("one", {"a.item": [{1, 2}]})
        with pytest.raises(wf.JobError, match="no job"):
            await engine.get_job("missing")


async def test_engine_without_a_store() -> None:
    async with wf.Engine() as engine:
        with pytest.raises(wf.JobError, match="no store"):
            await engine.submit("x", {})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("weirflow.db", "not a URL"),
        ("mongodb://localhost", "unknown scheme 'mongodb'"),
        ("redis:///0", "needs a host"),
        ("sqlite://weirflow.db", "sqlite:///relative"),
        ("sqlite:///", "no database file"),
        ("memory://x", "takes no path"),
        ("postgresql:///db", "needs a host"),
    ],
)
def test_bad_store_urls(url: str, message: str) -> None:
    with pytest.raises(wf.StoreError, match=message):
        wf.Engine(store=url)


async def test_postgres_down_at_open_is_a_store_error() -> None:
    from .pgserver import free_port

    with pytest.raises(wf.StoreError, match="cannot open PostgreSQL store"):
        await open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout_s=1).open()
