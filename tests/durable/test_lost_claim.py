"""A claim whose reply is lost (the store ran it, the worker's call failed) costs no attempt
(review s19 C): the worker gives back the jobs the store says it runs but it does not hold,
and a one-attempt job runs and completes instead of failing, never run, when the lease of
that claim runs out. Real Redis and PostgreSQL behind a TCP proxy that cuts the claim's
reply after the server ran it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator

import pytest

from weirflow.durable import JobSpec, Store, open_store, redis_lua
from weirflow.durable.worker import Worker

from ..redisserver import RedisServer
from . import flows
from .helpers import job_is, until
from .pgserver import PgServer

_REDIS_CLAIM = hashlib.sha1((redis_lua.COMMON + redis_lua.CLAIM).encode()).hexdigest().encode()
_PG_CLAIM = b"WITH picked"  # (the claim statement: postgres.py's _CLAIM)


class ClaimReplyCutter:
    """A TCP proxy in front of a server: once ``armed``, the next claim sent through it goes
    on to the server, which runs (and commits) it; its reply is thrown away and the client's
    connection cut."""

    def __init__(self, target_port: int, marker: bytes) -> None:
        self.target_port = target_port
        self.marker = marker
        self.armed = False
        self.cut = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        claim_sent = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if self.armed and self.marker in data:
                    self.armed = False
                    claim_sent.set()
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if claim_sent.is_set() and data.startswith(b"-NOSCRIPT"):
                    # Redis has not loaded the script yet: the client loads it and sends the
                    # claim again, and that one's reply is the one lost
                    claim_sent.clear()
                    self.armed = True
                elif claim_sent.is_set():  # the claim's reply: lost with the connection
                    self.cut.set()
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
            for w in (writer, up_writer):
                w.transport.abort()


@pytest.fixture(params=["redis", "postgres"])
async def through(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str, ClaimReplyCutter]]:
    """``(direct URL, URL through the proxy, proxy)`` of a fresh store."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.new_database()
        proxy = ClaimReplyCutter(server.port, _REDIS_CLAIM)
        await proxy.start()
        proxied = url.replace(f":{server.port}/", f":{proxy.port}/")
    else:
        pg: PgServer = request.getfixturevalue("pg")
        url = pg.new_database()
        proxy = ClaimReplyCutter(pg.port, _PG_CLAIM)
        await proxy.start()
        proxied = url.replace(f":{pg.port}/", f":{proxy.port}/")
    assert proxied != url
    yield url, proxied, proxy
    await proxy.close()


async def test_a_claim_whose_reply_is_lost_costs_no_attempt(
    through: tuple[str, str, ClaimReplyCutter],
) -> None:
    url, proxied, proxy = through
    prefix = {"prefix": f"t{uuid.uuid4().hex[:8]}"} if url.startswith("redis") else {}
    store = open_store(url, **prefix)
    await store.open()
    worker_store = open_store(proxied, **prefix)
    await worker_store.open()
    w = Worker(worker_store, [flows.one], worker_id="W", lease_s=2, poll_max_s=0.2)
    try:
        job_id = await store.submit(JobSpec(flow="one", inputs={"a.item": [{}]}, max_attempts=1))
        proxy.armed = True  # the worker's first claim takes the job
        async with w:
            async with asyncio.timeout(60):
                await proxy.cut.wait()  # the worker's claim of it ran; the worker never heard
            await until(lambda: _finished(store, job_id), w, timeout_s=60)
        job = await store.get(job_id)
        assert job is not None
        assert (job.status, job.attempt, job.stalls, job.error) == ("completed", 1, 0, None)
        kinds = [e.kind for e in await store.events(job_id=job_id)]
        assert kinds == ["queued", "running", "released", "running", "completed"], kinds
    finally:
        with contextlib.suppress(Exception):
            await worker_store.close()
        await store.close()


async def _finished(store: Store, job_id: str) -> bool:
    return await job_is(store, job_id, "completed", "failed", "cancelled")
