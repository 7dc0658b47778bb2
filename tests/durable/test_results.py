"""Results you can wait for, on every backend: outputs, dead letters and tracebacks kept by
the store, ``Store.wait_finished`` and ``engine.wait_job`` woken by the store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, StepRecord, Store
from weirflow.durable.worker import Worker

from . import flows
from .conftest import StoreFactory

LETTER = {"slot": "a.item", "item": {"x": 1}, "reason": "handler_failed", "error": "ValueError: x", "at": 1.5}
TRACE = 'Traceback (most recent call last):\n  File "x.py", line 1, in run\nValueError: x'


def spec(**kw: Any) -> JobSpec:
    return JobSpec(flow="f", inputs={"a.x": [1]}, **kw)


async def claimed(store: Store) -> str:
    job_id = await store.submit(spec())
    got = await store.claim("default", "w1", limit=1, lease_s=30)
    assert [j.id for j in got.jobs] == [job_id]
    return job_id


async def test_a_completion_keeps_its_outputs_and_dead_letters(store: Store) -> None:
    job_id = await claimed(store)
    assert await store.complete("w1", [(job_id, 1, {"b.out": [42]}, [LETTER])]) == []
    job = await store.get(job_id)
    assert job is not None and job.status == "completed"
    assert (job.outputs, job.dead_letters, job.error_detail) == ({"b.out": [42]}, [LETTER], None)
    plain = await claimed(store)
    await store.complete("w1", [(plain, 1, {})])  # (id, token, outputs): no dead letters
    job = await store.get(plain)
    assert job is not None and job.status == "completed" and job.dead_letters is None


async def test_a_failure_keeps_its_traceback_on_the_job_and_in_its_events(store: Store) -> None:
    job_id = await store.submit(spec(max_attempts=2, backoff=wf.Backoff(initial_s=0, jitter=False)))
    await store.claim("default", "w1", limit=1, lease_s=30)
    retrying = await store.fail(job_id, "w1", 1, "ValueError: x", detail=TRACE, dead_letters=[LETTER])
    assert retrying is not None and retrying.status == "queued"
    assert retrying.error_detail == TRACE and retrying.dead_letters is None  # not final: no letters
    await store.claim("default", "w1", limit=1, lease_s=30)
    failed = await store.fail(job_id, "w1", 2, "ValueError: y", detail=TRACE + "y", dead_letters=[LETTER])
    assert failed is not None and failed.status == "failed"
    job = await store.get(job_id)
    assert job is not None
    assert (job.error, job.error_detail, job.dead_letters) == ("ValueError: y", TRACE + "y", [LETTER])
    events = {e.kind: e.data for e in await store.events(job_id=job_id)}
    assert events["retrying"]["traceback"] == TRACE
    assert events["failed"]["traceback"] == TRACE + "y"
    again = await store.retry(job_id)
    assert (again.error, again.error_detail, again.dead_letters) == (None, None, None)
    job = await store.get(job_id)
    assert job is not None and (job.error_detail, job.dead_letters) == (None, None)


async def test_a_step_row_keeps_its_traceback(store: Store) -> None:
    job_id = await claimed(store)
    row = StepRecord(job_id, "a", 1, "failed", error="ValueError: x", traceback=TRACE, started_at=1.0)
    await store.record_steps([row])
    [got] = await store.steps(job_id)
    assert got.traceback == TRACE and got.to_dict()["traceback"] == TRACE


async def test_wait_finished_is_woken_by_an_outcome_written_elsewhere(make_store: StoreFactory) -> None:
    waiting, writing = await make_store(), await make_store()  # two connections (one store on memory)
    job_id = await writing.submit(spec())
    waiter = asyncio.ensure_future(waiting.wait_finished(job_id, 30))
    await writing.claim("default", "w1", limit=1, lease_s=30)
    await asyncio.sleep(0)  # (let the waiter make its first read: it must wait past it)
    assert not waiter.done()
    await writing.complete("w1", [(job_id, 1, {"b.out": [1]})])
    job = await asyncio.wait_for(waiter, 10)
    assert job is not None and job.status == "completed" and job.outputs == {"b.out": [1]}


async def test_wait_finished_on_a_finished_unknown_or_slow_job(store: Store) -> None:
    job_id = await store.submit(spec())
    late = await store.wait_finished(job_id, 0.05)
    assert late is not None and late.status == "queued"  # the job as it is when the time is up
    await store.cancel(job_id)
    done = await store.wait_finished(job_id, 0)
    assert done is not None and done.status == "cancelled"
    assert await store.wait_finished("nope", 1) is None


class Drop(wf.Routine):
    """Dead-letters odd items, passes even ones on; fails the job on a negative one."""

    item = wf.Slot()
    out = wf.Event()
    on_error = wf.ErrorPolicy(retries=0, give_up_on=(ValueError,), then="dead_letter")

    @item.handler
    async def run(self, item: int, ctx: wf.Context) -> None:
        if item < 0:
            raise KeyError(f"negative {item}")
        if item % 2:
            raise ValueError(f"odd {item}")
        await ctx.emit(self.out, item)


class FailJob(wf.Routine):
    item = wf.Slot()
    out = wf.Event()

    @item.handler
    def run(self, item: int, ctx: wf.Context) -> None:
        raise RuntimeError(f"cannot take {item}")


def _flows() -> list[wf.Flow]:
    drop = wf.Flow("drop")
    drop.add("d", Drop())
    drop.output("d.out")
    fail = wf.Flow("failjob")
    fail.add("f", FailJob())
    fail.output("f.out")
    return [drop, fail, flows.noop]


async def test_engine_wait_job_returns_outputs_and_dead_letters(store_url: str) -> None:
    engine = wf.Engine(store=store_url)
    for flow in _flows():
        engine.register(flow)
    async with engine, Worker(engine.store or store_url, engine, poll_max_s=0.05):
        job_id = await engine.submit("drop", {"d.item": [1, 2, 3, 4]})
        info = await engine.wait_job(job_id, timeout_s=30)
        assert info.status == "completed" and info.finished
        assert info.outputs == {"d.out": [2, 4]}
        assert [(d["slot"], d["item"], d["reason"]) for d in info.dead_letters] == [
            ("d.item", 1, "handler_failed"),
            ("d.item", 3, "handler_failed"),
        ]
        failed = [s for s in info.steps if s.status == "failed"]
        assert len(failed) == 2 and all("ValueError: odd" in (s.traceback or "") for s in failed)
        assert info.to_dict()["outputs"] == {"d.out": [2, 4]} and len(info.to_dict()["dead_letters"]) == 2
        assert (await engine.get_job(job_id)).dead_letters == info.dead_letters


async def test_engine_wait_job_on_a_failure_has_its_traceback(store_url: str) -> None:
    engine = wf.Engine(store=store_url)
    for flow in _flows():
        engine.register(flow)
    async with engine, Worker(engine.store or store_url, engine, poll_max_s=0.05):
        job_id = await engine.submit("failjob", {"f.item": [7]}, attempts=1)
        info = await engine.wait_job(job_id, timeout_s=30)
        assert info.status == "failed"
        assert info.error == "routine 'f' failed: RuntimeError: cannot take 7"
        assert info.error_detail is not None
        assert info.error_detail.startswith("Traceback (most recent call last):")
        assert "in run" in info.error_detail and info.error_detail.endswith("RuntimeError: cannot take 7")
        [step] = info.steps
        assert step.status == "failed" and step.traceback == info.error_detail
        assert engine.store is not None
        [event] = await engine.store.events(job_id=job_id, kind="failed")
        assert event.data["traceback"] == info.error_detail


async def test_engine_wait_job_times_out_or_does_not_know_the_job(store_url: str) -> None:
    engine = wf.Engine(store=store_url)
    engine.register(flows.noop)
    async with engine:
        job_id = await engine.submit("noop", {"n.input": [1]})  # no worker runs it
        with pytest.raises(wf.JobTimeoutError, match="still queued"):
            await engine.wait_job(job_id, timeout_s=0.1)
        with pytest.raises(wf.JobError, match="no job"):
            await engine.wait_job("nope", timeout_s=1)
        with pytest.raises(wf.JobError, match="timeout_s"):
            await engine.wait_job(job_id, timeout_s=-1)
