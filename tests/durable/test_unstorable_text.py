"""Text that PostgreSQL cannot hold (a NUL, a lone surrogate) in what a job reports.

The rule, the same on every store (``weirflow.durable.models.storable_text``): in the
text a store keeps about a job — a step's message, error and traceback, a job's error
and error detail — NUL and lone surrogates become U+FFFD. So a handler that raises
``ValueError("bad\\x00byte")`` fails its job with ``bad\ufffdbyte`` on every backend, and
a takeover that rebuilds the step rows from the journal (which holds the text exactly)
does not fail on PostgreSQL. A job's data (inputs, outputs, items) is never changed:
an outcome PostgreSQL cannot hold fails that job (with the reason), and only that job.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import weirflow as wf
from weirflow.durable import JobSpec, StepRecord, Store
from weirflow.durable.worker import Worker

from .conftest import FakeClock, StoreFactory
from .helpers import job_is, until
from .test_takeover_steps import _done, _start

BAD = "ValueError: bad\x00byte \udc80"
CLEAN = "ValueError: bad\ufffdbyte \ufffd"
NUL = "ValueError: bad\x00byte"  # (a journal record cannot hold a lone surrogate: its JSON has none)
STOP_S = 40.0  # the whole run of a worker, its shutdown included


@pytest.mark.parametrize("takeover", ["recover", "sweep", "claim", "cancel", "retry"])
async def test_a_takeover_of_a_job_whose_journal_holds_a_nul_in_a_step_error(
    store: Store, clock: FakeClock, takeover: str
) -> None:
    poisoned = await store.submit(JobSpec("f", {"a.item": [1]}, max_attempts=3))
    other = await store.submit(JobSpec("f", {"a.item": [2]}, max_attempts=3))
    jobs = {j.id: j.token for j in (await store.claim("default", "w1", limit=2, lease_s=30)).jobs}
    journal = [_start("a"), _done("a", "failed", NUL)]
    assert (
        await store.append_journal([(poisoned, r) for r in journal], tokens={poisoned: jobs[poisoned]}) == []
    )
    if takeover == "recover":
        assert sorted(await store.recover("w1")) == sorted([poisoned, other])
    elif takeover == "sweep":  # one transaction for every expired job of the store
        clock.advance(31)
        report = await store.sweep("sweeper")
        assert report is not None and sorted(report.requeued) == sorted([poisoned, other])
    elif takeover == "claim":  # a claim takes expired leases back on its own
        clock.advance(31)
        claimed = (await store.claim("default", "w2", limit=2, lease_s=30)).jobs
        assert sorted(j.id for j in claimed) == sorted([poisoned, other])
    elif takeover == "cancel":
        assert (await store.cancel(poisoned)).status == "cancelled"
    else:
        clock.advance(31)
        assert (await store.retry(poisoned)).status == "queued"
    steps = {s.routine: s for s in await store.steps(poisoned)}
    assert (steps["a"].status, steps["a"].error) == ("failed", "ValueError: bad\ufffdbyte")
    if takeover in ("recover", "sweep"):
        job = await store.get(other)
        assert job is not None and job.status == "queued"
    assert await store.read_journal(poisoned) == journal  # the journal keeps the text exactly


async def test_step_rows_and_failures_hold_nul_free_text_on_every_store(store: Store) -> None:
    job_id = await store.submit(JobSpec("f", {"a.item": [1]}, max_attempts=1))
    token = (await store.claim("default", "w1", limit=1, lease_s=30)).jobs[0].token
    row = StepRecord(
        job_id,
        "a",
        1,
        "failed",
        run=token,
        message=f"at {BAD}",
        error=BAD,
        traceback=f"tb {BAD}",
        worker="w1",
    )
    assert await store.record_steps([row]) == []
    [stored] = await store.steps(job_id)
    assert (stored.message, stored.error, stored.traceback) == (f"at {CLEAN}", CLEAN, f"tb {CLEAN}")
    failed = await store.fail(job_id, "w1", token, BAD, retry=False, detail=f"detail {BAD}")
    assert (failed.status, failed.error, failed.error_detail) == ("failed", CLEAN, f"detail {CLEAN}")
    job = await store.get(job_id)
    assert job is not None and (job.error, job.error_detail) == (CLEAN, f"detail {CLEAN}")


class Raises(wf.Routine):
    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        if item.get("raise"):
            raise ValueError("bad\x00byte")
        ctx.progress(50, "half\x00way")
        await ctx.emit(self.out, item.get("emit", item))


nul = wf.Flow("nul")
nul.add("a", Raises())
nul.output("a.out")


@pytest.mark.parametrize("store_url", ["sqlite", "postgres", "redis"], indirect=True)
async def test_a_worker_whose_handler_raises_text_with_a_nul_fails_that_job_and_goes_on(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    bad = await store.submit(JobSpec(flow="nul", inputs={"a.item": [{"raise": True}]}, max_attempts=1))
    async with asyncio.timeout(STOP_S), Worker(store, [nul], worker_id="w0", poll_max_s=0.2) as worker:

        async def bad_failed() -> bool:
            return await job_is(store, bad, "failed") is not None

        await until(bad_failed, worker, timeout_s=15)
        good = await store.submit(JobSpec(flow="nul", inputs={"a.item": [{"n": 1}]}))

        async def good_done() -> bool:
            return await job_is(store, good, "completed") is not None

        await until(good_done, worker, timeout_s=15)
    job = await store.get(bad)
    assert job is not None and "bad\ufffdbyte" in (job.error or "")
    [step] = await store.steps(bad)
    assert step.status == "failed" and "bad\ufffdbyte" in (step.error or "")
    [step] = await store.steps(good)
    assert (step.status, step.message) == ("completed", "half\ufffdway")


class Letters(wf.Routine):
    """Fails on every item, which is dead-lettered with the error: the job completes."""

    item = wf.Slot()
    out = wf.Event()
    on_error = wf.ErrorPolicy(then="dead_letter")

    @item.handler
    async def run(self, item: Any, ctx: wf.Context) -> None:
        raise ValueError(f"bad\x00byte {item}")


letters = wf.Flow("letters")
letters.add("a", Letters())
letters.output("a.out")


@pytest.mark.parametrize("store_url", ["sqlite", "postgres", "redis"], indirect=True)
async def test_a_dead_letter_whose_error_holds_a_nul_is_stored_with_its_job(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(JobSpec(flow="letters", inputs={"a.item": [1]}))
    async with asyncio.timeout(STOP_S), Worker(store, [letters], worker_id="w0", poll_max_s=0.2) as worker:

        async def done() -> bool:
            return await job_is(store, job_id, "completed") is not None

        await until(done, worker, timeout_s=15)
    job = await store.get(job_id)
    assert job is not None and job.dead_letters is not None
    assert [(d["item"], d["error"]) for d in job.dead_letters] == [(1, "ValueError: bad\ufffdbyte 1")]


# What follows has a real PostgreSQL refuse a write for what it holds (a CHECK constraint
# the test adds): a value that no rule of weirflow foresaw. Nothing of it may stop the
# store or the worker for the other jobs.

MARK = "refused-by-check"


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_takeover_whose_step_rows_the_server_refuses_still_takes_every_job_back(
    store: Store, clock: FakeClock, store_url: str
) -> None:
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE wf_steps ADD CONSTRAINT refuse CHECK (error NOT LIKE '%{MARK}%')")
    poisoned = await store.submit(JobSpec("f", {"a.item": [1]}, max_attempts=3))
    other = await store.submit(JobSpec("f", {"a.item": [2]}, max_attempts=3))
    jobs = {j.id: j.token for j in (await store.claim("default", "w1", limit=2, lease_s=30)).jobs}
    journal = [_start("a"), _done("a", "failed", f"ValueError: {MARK}")]
    assert (
        await store.append_journal([(poisoned, r) for r in journal], tokens={poisoned: jobs[poisoned]}) == []
    )
    clock.advance(31)
    report = await store.sweep("sweeper")
    assert report is not None and sorted(report.requeued) == sorted([poisoned, other])
    for job_id in (poisoned, other):
        job = await store.get(job_id)
        assert job is not None and job.status == "queued"


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_an_outcome_the_server_refuses_fails_only_its_job_and_the_worker_stops(
    make_store: StoreFactory, store_url: str
) -> None:
    store = await make_store()
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE wf_jobs ADD CONSTRAINT refuse CHECK (outputs::text NOT LIKE '%{MARK}%')")
        conn.execute(f"ALTER TABLE wf_steps ADD CONSTRAINT refuse CHECK (message NOT LIKE '%{MARK}%')")
    bad = await store.submit(JobSpec(flow="nul", inputs={"a.item": [{"emit": MARK}]}, max_attempts=1))
    goods = [await store.submit(JobSpec(flow="nul", inputs={"a.item": [{"n": n}]})) for n in range(3)]
    async with asyncio.timeout(STOP_S), Worker(store, [marked], worker_id="w0", poll_max_s=0.2) as worker:

        async def all_done() -> bool:
            return all([await job_is(store, j, "completed", "failed") is not None for j in [bad, *goods]])

        await until(all_done, worker, timeout_s=15)
    for n, job_id in enumerate(goods):
        job = await store.get(job_id)
        assert job is not None and (job.status, job.outputs) == ("completed", {"a.out": [{"n": n}]})
    job = await store.get(bad)
    assert job is not None and job.status == "failed" and "cannot be stored" in (job.error or "")
    assert worker.failed == 1 and worker.completed == 3


class Marked(wf.Routine):
    """Reports progress with the item's text (its step row is refused for the marked one)."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        ctx.progress(50, str(item))
        await ctx.emit(self.out, item.get("emit", item))


marked = wf.Flow("nul")
marked.add("a", Marked())
marked.output("a.out")
