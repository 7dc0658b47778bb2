"""Values a durable job cannot hold exactly are refused at every door, naming where they are;
one the journal meets anyway (a job stored before the check) fails its job cleanly."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.durable.journal import DurableJournal
from weirflow.durable.worker import Worker

from . import flows
from .conftest import StoreFactory
from .helpers import job_is, until

BIG = 2**64


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (BIG, 'inputs["a.item"][1]: integer 18446744073709551616 is out of range'),
        ({"x": float("nan")}, 'inputs["a.item"][1]["x"]: nan is not a JSON number'),
        ([float("inf")], 'inputs["a.item"][1][0]: inf is not a JSON number'),
    ],
)
async def test_python_submit_refuses_with_a_store_error_naming_the_path(
    store_url: str, item: Any, message: str
) -> None:
    engine = wf.Engine(store=store_url)
    engine.register(flows.one)
    async with engine:
        with pytest.raises(wf.StoreError) as caught:
            await engine.submit("one", {"a.item": [{}, item]})
        assert str(caught.value).startswith(message)
        assert isinstance(caught.value, wf.UnstorableError)
        assert caught.value.path == message.split(":")[0]
        store = engine.store
        assert store is not None and await store.list_jobs() == []


async def test_send_to_a_durable_job_refuses_what_its_journal_cannot_hold(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="noop", inputs={}))
    async with wf.Engine(journal=DurableJournal(store)) as engine:
        job = await engine.start(flows.noop, job_id=job_id, keep_open=True)
        for item, message in [
            (BIG, "item: integer 18446744073709551616 is out of range"),
            ({"k": [float("nan")]}, 'item["k"][0]: nan is not a JSON number'),
            ((1, 2), "item: a tuple would come back as a list"),
        ]:
            with pytest.raises(wf.UnstorableError, match=message.replace("[", r"\[").replace("]", r"\]")):
                await job.send("n.input", item)
        assert job.queues()["n.input"].enqueued == 0  # refused before it was enqueued
        await job.send("n.input", 2**64 - 1)
        await job.close_input()
        result = await job.wait(timeout_s=10)
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs["n.output"] == [2**64 - 1]


async def _store_unchecked_inputs(store: Store, store_url: str, job_id: str, inputs_json: str) -> None:
    """What a job submitted before the check (or written by hand) may hold."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE wf_jobs SET inputs = ? WHERE id = ?", (inputs_json, job_id))
    else:
        async with await psycopg.AsyncConnection.connect(store.url) as conn:
            await conn.execute("UPDATE wf_jobs SET inputs = %s::jsonb WHERE id = %s", (inputs_json, job_id))
            await conn.commit()


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
async def test_an_input_the_journal_cannot_encode_fails_the_job_with_that_message(
    make_store: StoreFactory, store_url: str
) -> None:
    """Before: the input's ``enq`` record went missing and every retry crashed replaying the
    journal (``IndexError: pop from an empty deque``). Now each attempt fails at once, saying
    which item, and the replay of what it committed works."""
    store = await make_store()
    backoff = wf.Backoff(initial_s=0.01, factor=1.0, max_s=0.01, jitter=False)
    job_id = await store.submit(
        JobSpec(flow="noop", inputs={"n.input": [1, 2]}, max_attempts=3, backoff=backoff)
    )
    await _store_unchecked_inputs(store, store_url, job_id, '{"n.input": [1, 18446744073709551616, 3]}')
    async with Worker(store, [flows.noop], worker_id="w", poll_max_s=0.05) as w:

        async def failed() -> bool:
            return await job_is(store, job_id, "failed") is not None

        await until(failed, w, timeout_s=20)
    job = await store.get(job_id)
    assert job is not None and job.attempt == 3 and job.outputs is None
    assert job.error == (
        "the durable journal cannot record an item of n.input: "
        "item: integer 18446744073709551616 is out of range "
        "(durable jobs hold integers from -2**63 to 2**64-1)"
    )
    failures = [e.data.get("error") for e in await store.events(job_id=job_id) if "error" in e.data]
    assert failures and all(f == job.error for f in failures)  # every attempt, not a replay crash
