"""``Store.complete(..., steps=...)``: a job's last step rows written with its outcome, on
every store (memory, SQLite, PostgreSQL, Redis)."""

from __future__ import annotations

import pytest

from weirflow.durable import JobSpec, StepRecord
from weirflow.durable.store import Store
from weirflow.errors import StoreRefusedError


async def _claimed(store: Store, worker: str = "w1") -> tuple[str, int]:
    job_id = await store.submit(JobSpec(flow="f", inputs={}))
    [job] = (await store.claim("default", worker, limit=1, lease_s=30)).jobs
    return job_id, job.token


def _by_step(rows: list[StepRecord]) -> dict[str, tuple[str, str | None]]:
    return {r.routine: (r.status, r.error) for r in rows}


async def test_the_rows_given_are_written_with_the_outcome(store: Store) -> None:
    job_id, token = await _claimed(store)
    # a row written before, still running, and not among the rows given
    await store.record_steps([StepRecord(job_id, "early", 1, "running", run=token, worker="w1")])
    rows = [
        StepRecord(job_id, "a", 1, "completed", run=token, progress=100.0, completed_at=5.0, worker="w1"),
        StepRecord(job_id, "b", 1, "running", run=token, started_at=4.0, worker="w1"),
        StepRecord(job_id, "c", 1, "failed", run=token, error="boom", completed_at=5.0, worker="w1"),
    ]
    assert await store.complete("w1", [(job_id, token, {"out": 1})], rows) == []
    got = _by_step(await store.steps(job_id))
    assert got["a"] == ("completed", None)
    assert got["c"] == ("failed", "boom")
    # the job ended without them: interrupted, saying why
    assert got["b"][0] == "interrupted" and got["b"][1]
    assert got["early"][0] == "interrupted" and got["early"][1]
    job = await store.get(job_id)
    assert job is not None and job.status == "completed" and job.outputs == {"out": 1}


async def test_rows_of_another_run_or_job_are_not_written(store: Store) -> None:
    job_id, token = await _claimed(store)
    other = await store.submit(JobSpec(flow="f", inputs={}, queue="other"))
    rows = [
        StepRecord(job_id, "a", 1, "completed", run=token, worker="w1"),
        StepRecord(job_id, "old", 1, "completed", run=token - 1, worker="w1"),
        StepRecord(other, "x", 1, "completed", run=token, worker="w1"),
    ]
    assert await store.complete("w1", [(job_id, token, {})], rows) == []
    assert [r.routine for r in await store.steps(job_id)] == ["a"]
    assert await store.steps(other) == []


async def test_a_refused_completion_writes_no_step_rows(store: Store) -> None:
    job_id, stale = await _claimed(store, "w1")
    assert await store.release({job_id: stale}, "w1") == []
    [job] = (await store.claim("default", "w2", limit=1, lease_s=30)).jobs
    await store.record_steps([StepRecord(job_id, "a", 1, "running", run=job.token, worker="w2")])
    # w1, its claim stale, reports the job completed with its rows: nothing of it is written
    rows = [
        StepRecord(job_id, "a", 1, "completed", run=stale, worker="w1"),
        StepRecord(job_id, "b", 1, "completed", run=stale, worker="w1"),
    ]
    assert await store.complete("w1", [(job_id, stale, {})], rows) == [job_id]
    assert [(r.routine, r.status, r.worker) for r in await store.steps(job_id)] == [("a", "running", "w2")]
    now = await store.get(job_id)
    assert now is not None and now.status == "running" and now.worker_id == "w2"


# (PostgreSQL refuses two rows of a step in one completion: its upsert cannot change a row twice
# in one statement, CardinalityViolation. The worker's step buffer holds one row per step, so it
# never sends two; left to the PostgreSQL store's owners)
@pytest.mark.parametrize("store_url", ["memory", "sqlite", "redis"], indirect=True)
async def test_the_last_row_of_a_step_given_wins(store: Store) -> None:
    job_id, token = await _claimed(store)
    rows = [
        StepRecord(job_id, "a", 1, "running", run=token, worker="w1"),
        StepRecord(job_id, "a", 1, "completed", run=token, progress=100.0, worker="w1"),
        StepRecord(job_id, "b", 1, "completed", run=token, worker="w1"),
        StepRecord(job_id, "b", 1, "running", run=token, worker="w1"),
    ]
    assert await store.complete("w1", [(job_id, token, {})], rows) == []
    got = _by_step(await store.steps(job_id))
    assert got["a"] == ("completed", None)
    assert got["b"][0] == "interrupted"  # (its last row is running: the job ended without it)


async def test_a_later_run_completing_a_step_interrupted_before_shows_it_completed(store: Store) -> None:
    # run 1 leaves step "a" running and gives the job back (the step is interrupted); run 2
    # completes the job with the step's row: the row read is run 2's, not the interruption
    job_id, first = await _claimed(store, "w1")
    await store.record_steps([StepRecord(job_id, "a", 1, "running", run=first, worker="w1")])
    assert await store.release({job_id: first}, "w1") == []
    assert _by_step(await store.steps(job_id))["a"][0] == "interrupted"
    [job] = (await store.claim("default", "w2", limit=1, lease_s=30)).jobs
    rows = [StepRecord(job_id, "a", 1, "completed", run=job.token, worker="w2")]
    assert await store.complete("w2", [(job_id, job.token, {})], rows) == []
    assert _by_step(await store.steps(job_id)) == {"a": ("completed", None)}


async def test_a_completion_by_another_worker_writes_no_step_rows(store: Store) -> None:
    # the token is the job's run, but the job is held by w1: w2's completion is refused, and
    # its rows with it (the run alone does not fence them)
    job_id, token = await _claimed(store, "w1")
    rows = [StepRecord(job_id, "a", 1, "completed", run=token, worker="w2")]
    assert await store.complete("w2", [(job_id, token, {})], rows) == [job_id]
    assert await store.steps(job_id) == []
    now = await store.get(job_id)
    assert now is not None and now.status == "running" and now.worker_id == "w1"


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
async def test_a_row_the_store_cannot_hold_refuses_the_whole_completion(store: Store) -> None:
    job_id, token = await _claimed(store)
    rows = [
        StepRecord(job_id, "a", 1, "completed", run=token, worker="w1"),
        StepRecord(job_id, "b", 2**70, "completed", run=token, worker="w1"),  # no integer column holds it
    ]
    with pytest.raises(StoreRefusedError):
        await store.complete("w1", [(job_id, token, {})], rows)
    assert await store.steps(job_id) == []
    job = await store.get(job_id)
    assert job is not None and job.status == "running"
    # the same completion without the rows goes in
    assert await store.complete("w1", [(job_id, token, {})], rows[:1]) == []
