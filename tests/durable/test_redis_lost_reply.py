"""A Redis submit whose answer is lost with its connection (the script ran, the reply never
came) is sent again; the re-run answers what the first run did: created, also with an
idempotency key (its answer is the HTTP 201/200 and a schedule's wake-up)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from weirflow.durable import JobSpec
from weirflow.durable.redis_store import RedisStore
from weirflow.durable.schedules import Schedule

from ..redisserver import RedisServer
from .conftest import FakeClock


class ReplyDropper:
    """A TCP proxy in front of ``redis-server``: while ``armed``, the reply to the next script
    call (``EVALSHA``, not a ``NOSCRIPT`` refusal) is thrown away and the client's connection
    closed, after the server ran it: a reply lost with the connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.dropped = asyncio.Event()
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
        script_sent = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                if b"EVALSHA" in data.upper():
                    script_sent.set()
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if self.armed and script_sent.is_set() and not data.startswith(b"-NOSCRIPT"):
                    self.armed = False
                    self.dropped.set()
                    writer.transport.abort()  # the reply never reaches the client
                    return
                script_sent.clear()
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
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()


@pytest.fixture
async def dropper(redis_server: RedisServer) -> AsyncIterator[ReplyDropper]:
    proxy = ReplyDropper(redis_server.port)
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.mark.parametrize("key", [None, "k1"])
async def test_a_submit_resent_after_its_reply_was_lost_answers_created(
    dropper: ReplyDropper, redis_server: RedisServer, key: str | None
) -> None:
    db = redis_server.new_database().rsplit("/", 1)[1]
    store = RedisStore(f"redis://127.0.0.1:{dropper.port}/{db}", prefix=f"t{uuid.uuid4().hex[:8]}")
    await store.open()
    try:
        await store.submit(JobSpec(flow="f", inputs={}))  # (the scripts are loaded)
        dropper.armed = True
        job_id, created = await store.submit_once(JobSpec(flow="f", inputs={}, idempotency_key=key))
        assert dropper.dropped.is_set()  # the first run's reply was lost: this answer is the re-run's
        assert created
        jobs = await store.list_jobs()
        assert len(jobs) == 2 and jobs[0].id == job_id
        if key is not None:  # a later submit with the key finds that job, not created
            assert await store.submit_once(JobSpec(flow="f", inputs={}, idempotency_key=key)) == (
                job_id,
                False,
            )
    finally:
        await store.close()


async def test_a_schedule_firing_resent_after_its_reply_was_lost_answers_its_job(
    dropper: ReplyDropper, redis_server: RedisServer
) -> None:
    clock = FakeClock()
    db = redis_server.new_database().rsplit("/", 1)[1]
    url = f"redis://127.0.0.1:{dropper.port}/{db}"
    store = RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}", clock=clock)
    await store.open()
    try:
        stored = await store.add_schedule(Schedule(name="tick", flow="f", inputs={}, every_s=60))
        clock.now = stored.next_at
        dropper.armed = True
        fired = await store.fire_schedules("default")
        assert dropper.dropped.is_set()  # the firing ran, its reply was lost: this is the re-run's
        [job] = await store.list_jobs()
        assert fired.jobs == [job.id] and fired.next_at == stored.next_at + 60
        [s] = await store.list_schedules()
        assert (s.last_at, s.last_job_id) == (stored.next_at, job.id)
    finally:
        await store.close()
