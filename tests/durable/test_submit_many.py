"""Submitting many jobs at once (``store.submit_many``, ``engine.submit_many``), and the
PostgreSQL store's connections: one ``NOTIFY`` per batch, no ping per call, and a dropped
connection recovered from by the next call."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store, open_store

from . import flows
from .conftest import StoreFactory
from .pgserver import PgServer


def spec(n: int, **kw: Any) -> JobSpec:
    return JobSpec(flow="noop", inputs={"n.input": [n]}, **kw)


async def test_submit_many_queues_every_job_in_order(store: Store) -> None:
    assert await store.submit_many([]) == []
    before = await store.submit(spec(-1, idempotency_key="held"))
    done = await store.submit_many(
        [
            spec(0),
            spec(1, idempotency_key="k"),
            spec(2, idempotency_key="held"),  # held by an earlier job
            spec(3, idempotency_key="k"),  # held by an earlier job of this batch
            spec(4, queue="other", idempotency_key="k"),  # keys are per queue
            spec(5, priority=0, delay_s=0),
        ]
    )
    assert [created for _, created in done] == [True, True, False, False, True, True]
    ids = [job_id for job_id, _ in done]
    assert ids[2] == before and ids[3] == ids[1] and len(set(ids)) == 5
    for n, job_id in enumerate(ids):
        job = await store.get(job_id)
        assert job is not None and job.status == "queued"
        if n not in (2, 3):
            assert job.inputs == {"n.input": [n]}
    queued = [e.job_id for e in await store.events(kind="queued")]
    assert sorted(queued) == sorted({before, *ids})  # one event per job made, none for the others
    claim = await store.claim("default", "w", limit=10, lease_s=30)
    assert [j.id for j in claim.jobs] == [before, ids[0], ids[1], ids[5]]  # oldest first: batch order


async def test_engine_submit_many_checks_every_job_before_queuing_any(store_url: str) -> None:
    engine = wf.Engine(store=store_url)
    engine.register(flows.noop)
    engine.register(flows.one)
    async with engine:
        store = engine.store
        assert store is not None
        ids = await engine.submit_many(
            [("noop", {"n.input": [1]}), JobSpec(flow="one", inputs={"a.item": [{}]}, priority=5)],
            attempts=7,
        )
        first, second = [await store.get(i) for i in ids]
        assert first is not None and (first.flow, first.max_attempts, first.priority) == ("noop", 7, 0)
        assert second is not None and (second.flow, second.max_attempts, second.priority) == ("one", 3, 5)
        again = await engine.submit_many(
            [("noop", {"n.input": [2]}), JobSpec(flow="noop", inputs={}, idempotency_key="x")] * 2
        )
        assert again[1] == again[3] and len(set(again)) == 3
        for bad, message in [
            ([("noop", {"n.input": [1]}), ("missing", {})], "no flow named 'missing'"),
            ([("noop", {"n.input": [1]}), ("noop", {"x.y": [1]})], "has no slot 'x.y'"),
            (
                [("noop", {"n.input": [1]}), ("noop", {"n.input": [2**64]})],
                r'inputs\["n.input"\]\[0\]: integer',
            ),
        ]:
            with pytest.raises(wf.JobError, match=message):
                await engine.submit_many(bad)
        assert len(await store.list_jobs()) == 5  # the refused batches queued nothing


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_batch_is_one_notify(make_store: StoreFactory) -> None:
    store = await make_store()
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as listener:
        await listener.execute("LISTEN weirflow_jobs")
        await store.submit_many([spec(n) for n in range(50)])
        await store.submit_many([spec(n, queue="marker") for n in range(3)])
        payloads = []
        async with asyncio.timeout(10):
            async for note in listener.notifies():
                payloads.append(note.payload)
                if note.payload == "marker":
                    break
    assert payloads == ["default", "marker"]  # one per batch (50 submits made 50 before)


async def _backends(admin_url: str, db: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (db,)
        )
        return [r[0] for r in await cur.fetchall()]


async def _calls_until_healthy(store: Store, job_id: str, calls: int = 8) -> list[str]:
    """``ok`` or ``failed`` for each of ``calls`` reads in a row."""
    outcomes = []
    for _ in range(calls):
        try:
            await store.get(job_id)
            outcomes.append("ok")
        except wf.StoreError:
            outcomes.append("failed")
    return outcomes


async def _fill_pool(store: Store, n: int) -> None:
    """Have the store's pool open ``n`` connections (``n`` reads waiting at once)."""
    await asyncio.gather(*[store._fetch("SELECT pg_sleep(0.2)") for _ in range(n)])  # type: ignore[attr-defined]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_terminated_connections_cost_one_failed_call(store_url: str, pg: PgServer) -> None:
    """No ping at checkout: the first call on a dead connection fails, has the pool test its
    idle ones, and every call after it works (it was up to one failure per pooled
    connection without that test)."""
    store = open_store(store_url, pool_size=6)
    await store.open()
    try:
        job_id = await store.submit(spec(1))
        await _fill_pool(store, 6)
        db = store_url.rsplit("/", 1)[1]
        pids = await _backends(pg.url(), db)
        assert len(pids) >= 3  # (the pool grows in the background: most of the 6)
        async with await psycopg.AsyncConnection.connect(pg.url(), autocommit=True) as admin:
            for pid in pids:
                await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        outcomes = await _calls_until_healthy(store, job_id)
        assert outcomes in (["ok"] * 8, ["failed"] + ["ok"] * 7), outcomes
        assert (await store.submit_many([spec(2)]))[0][1] is True
    finally:
        await store.close()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_restarted_server_costs_one_failed_call(store_url: str, pg: PgServer) -> None:
    store = open_store(store_url, pool_size=6)
    await store.open()
    try:
        job_id = await store.submit(spec(1))
        await _fill_pool(store, 6)
        pg.stop()
        with pytest.raises(wf.StoreError):
            await store.get(job_id)
        pg.start()
        outcomes = await _calls_until_healthy(store, job_id)
        assert outcomes in (["ok"] * 8, ["failed"] + ["ok"] * 7), outcomes
        job = await store.get(job_id)
        assert job is not None and job.status == "queued"
    finally:
        await store.close()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_concurrent_submits_share_a_statement_and_keep_their_answers(make_store: StoreFactory) -> None:
    """Group commit: submits made while one is being written go together in the next
    statement; each still gets its own id, and one key still makes one job."""
    store = await make_store()
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as listener:
        await listener.execute("LISTEN weirflow_jobs")
        made = await asyncio.gather(*[store.submit_once(spec(n)) for n in range(20)])
        keyed = await asyncio.gather(*[store.submit_once(spec(n, idempotency_key="same")) for n in range(10)])
        await store.submit_many([spec(0, queue="marker")])
        payloads = []
        async with asyncio.timeout(10):
            async for note in listener.notifies():
                payloads.append(note.payload)
                if note.payload == "marker":
                    break
    assert all(created for _, created in made) and len({job_id for job_id, _ in made}) == 20
    for n, (job_id, _) in enumerate(made):
        job = await store.get(job_id)
        assert job is not None and job.inputs == {"n.input": [n]}
    assert [created for _, created in keyed].count(True) == 1 and len({i for i, _ in keyed}) == 1
    assert len(payloads) <= 3  # 30 submits: a NOTIFY per statement, not per submit (was 31)
