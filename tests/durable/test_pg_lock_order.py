"""PostgreSQL: the statements of one worker that lock several job rows lock them in id
order, so they never deadlock with each other. (A renewal locked its rows in the order
of the worker's claims while its journal batches and step rows lock theirs in id order:
with two jobs in different orders, PostgreSQL killed one of them after its 1 s
``deadlock_timeout``, and a renewal that lost was late by more than a second.)"""

from __future__ import annotations

import asyncio
import time

import pytest

from weirflow.durable import JobSpec, open_store
from weirflow.durable.models import StepRecord

from .pgserver import PgServer

pytestmark = pytest.mark.slow

RUN_S = 6.0


async def test_renewals_outcomes_journal_and_step_rows_of_one_worker_never_deadlock(pg: PgServer) -> None:
    url = pg.new_database()
    store = open_store(url)
    await store.open()
    try:
        await store.submit_many([JobSpec(flow="f", inputs={}) for _ in range(60)])
        claim = await store.claim("default", "W", limit=60, lease_s=600)
        tokens = {j.id: j.token for j in claim.jobs}
        ids = sorted(tokens)
        backwards = {i: tokens[i] for i in reversed(ids)}  # a worker's claims come in any order
        errors: list[str] = []
        stop = time.monotonic() + RUN_S

        async def renews() -> None:
            while time.monotonic() < stop:
                try:
                    await store.renew("W", backwards, 600)
                except Exception as e:  # noqa: BLE001 - what the test counts
                    errors.append(f"renew: {e}")

        async def appends() -> None:
            while time.monotonic() < stop:
                try:
                    await store.append_journal([(i, '{"t":"x"}') for i in ids], tokens=tokens)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"append: {e}")

        async def steps() -> None:
            seq = 0
            while time.monotonic() < stop:
                seq += 1
                rows = [
                    StepRecord(job_id=i, routine="a", seq=seq, status="running", attempt=1, run=tokens[i])
                    for i in ids
                ]
                try:
                    await store.record_steps(rows)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"steps: {e}")

        await asyncio.gather(renews(), renews(), appends(), steps())
        assert not errors, (len(errors), errors[:3])
        # the outcomes of the jobs, in an order that is not theirs either, beside renewals
        done = [(i, tokens[i], {"out": [1]}, []) for i in reversed(ids)]
        refused, _ = await asyncio.gather(store.complete("W", done), store.renew("W", dict(tokens), 600))
        assert refused == []
        assert {j.status for j in await store.list_jobs(limit=100)} == {"completed"}
    finally:
        await store.close()
