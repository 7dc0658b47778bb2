"""A busy PostgreSQL pool (every connection in use, the server answering) is not an outage.

A call that waited ``connect_timeout_s`` for a connection fails with a timeout, and only
that call: the pool is not replaced, so the calls still waiting for one of its
connections get it when it is given back (replacing the pool would close it under them,
failing each with "the pool is closed").
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from weirflow.durable import JobSpec
from weirflow.durable.postgres import PostgresStore
from weirflow.errors import StoreError

from .pgserver import PgServer

HOLD_TIMEOUT_S = 15.0
TIMEOUT_S = 3.0  # the pool's checkout timeout


async def test_a_checkout_timeout_with_the_server_up_fails_only_that_call(pg: PgServer) -> None:
    url = pg.new_database()
    store = PostgresStore(url, pool_size=1, connect_timeout_s=TIMEOUT_S)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="f", inputs={}))
        # the pool's only connection is held by a cancel that waits for a row lock held elsewhere
        with psycopg.connect(url) as locker:
            locker.execute("SELECT 1 FROM wf_jobs WHERE id = %s FOR UPDATE", (job_id,))
            loop = asyncio.get_running_loop()
            start = loop.time()
            holder = asyncio.create_task(store.cancel(job_id))
            first = asyncio.create_task(store.get(job_id))  # waits for the connection, then times out
            # (sleeps as a schedule, not to wait for state: the second call starts half the
            # timeout later, and the connection comes back between the two deadlines)
            await asyncio.sleep(TIMEOUT_S / 2)
            second = asyncio.create_task(store.get(job_id))
            with pytest.raises(StoreError, match="PoolTimeout"):
                await asyncio.wait_for(first, HOLD_TIMEOUT_S)
            await asyncio.sleep(max(0.0, start + TIMEOUT_S * 1.25 - loop.time()))
            assert not second.done()
            locker.commit()  # the connection comes back to the pool: the second call gets it
        cancelled = await asyncio.wait_for(holder, HOLD_TIMEOUT_S)
        assert cancelled.status == "cancelled"
        got = await asyncio.wait_for(second, HOLD_TIMEOUT_S)
        assert got is not None and got.status == "cancelled"
        assert (await store.get(job_id)) is not None  # and the store goes on working
    finally:
        await store.close()
