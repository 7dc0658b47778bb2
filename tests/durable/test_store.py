"""The shared store suite: every test runs on memory, SQLite and a real PostgreSQL 15."""

from __future__ import annotations

import asyncio
import datetime
import re
import uuid
from typing import Any

import psycopg
import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Rate, Retention, StepRecord, Store

from .conftest import FakeClock, StoreFactory

NO_JITTER = wf.Backoff(initial_s=2.0, factor=3.0, max_s=60.0, jitter=False)


def spec(**kw: object) -> JobSpec:
    return JobSpec(flow=str(kw.pop("flow", "f")), inputs=dict(kw.pop("inputs", {"a.x": [1]})), **kw)  # type: ignore[arg-type]


async def claim_ids(store: Store, n: int = 10, worker: str = "w1", **kw: object) -> list[str]:
    got = await store.claim("default", worker, limit=n, lease_s=30, **kw)  # type: ignore[arg-type]
    return [j.id for j in got.jobs]


async def test_submit_then_get_and_claim(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec(inputs={"a.x": [1, "two", {"3": None}]}, timeout_s=5))
    job = await store.get(job_id)
    assert job is not None
    assert (job.status, job.attempt, job.flow, job.queue) == ("queued", 0, "f", "default")
    assert job.inputs == {"a.x": [1, "two", {"3": None}]}
    assert job.timeout_s == 5 and job.run_at == clock.now
    got = await store.claim("default", "w1", limit=5, lease_s=30)
    assert [j.id for j in got.jobs] == [job_id]
    running = got.jobs[0]
    assert (running.status, running.attempt, running.worker_id) == ("running", 1, "w1")
    assert running.lease_expires_at == clock.now + 30
    assert await claim_ids(store) == []
    assert await store.complete("w1", [(job_id, running.token, {"b.out": [42]})]) == []
    done = await store.get(job_id)
    assert done is not None and done.status == "completed" and done.outputs == {"b.out": [42]}
    assert [e.kind for e in await store.events(job_id=job_id)] == ["queued", "running", "completed"]
    assert await store.get("nope") is None


async def test_idempotency_key_under_concurrent_submits(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    submits = await asyncio.gather(
        *(stores[i % 3].submit_once(spec(idempotency_key="order-42")) for i in range(20))
    )
    ids = [job_id for job_id, _ in submits]
    assert len(set(ids)) == 1
    assert sum(created for _, created in submits) == 1  # exactly one of them made it
    assert len(await stores[0].list_jobs()) == 1
    other_queue = await stores[0].submit(spec(idempotency_key="order-42", queue="other"))
    assert other_queue != ids[0]


async def test_priority_then_age(store: Store, clock: FakeClock) -> None:
    low = await store.submit(spec(priority=0))
    clock.advance(1)
    high = await store.submit(spec(priority=5))
    clock.advance(1)
    low2 = await store.submit(spec(priority=0))
    clock.advance(1)
    high2 = await store.submit(spec(priority=5))
    assert await claim_ids(store, 3) == [high, high2, low]
    assert await claim_ids(store, 3) == [low2]


async def test_a_delayed_job_waits_for_its_time(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec(delay_s=10))
    job = await store.get(job_id)
    assert job is not None and job.run_at == clock.now + 10
    got = await store.claim("default", "w1", limit=1, lease_s=30)
    assert got.jobs == [] and got.wait_s == pytest.approx(10)
    clock.advance(9.9)
    assert await claim_ids(store) == []
    clock.advance(0.2)
    assert await claim_ids(store) == [job_id]


async def test_failure_retries_with_backoff_then_fails(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec(max_attempts=3, backoff=NO_JITTER))
    [first] = await claim_ids(store)
    retried = await store.fail(first, "w1", 1, "boom 1")
    assert retried is not None and retried.status == "queued" and retried.run_at == clock.now + 2.0
    clock.advance(1.9)
    assert await claim_ids(store) == []
    clock.advance(0.2)
    assert await claim_ids(store) == [job_id]
    again = await store.fail(job_id, "w1", 2, "boom 2")
    assert again is not None and again.run_at == pytest.approx(clock.now + 6.0)  # 2 * 3
    clock.advance(6)
    assert await claim_ids(store) == [job_id]
    dead = await store.fail(job_id, "w1", 3, "boom 3")
    assert dead is not None and (dead.status, dead.attempt, dead.error) == ("failed", 3, "boom 3")
    kinds = [e.kind for e in await store.events(job_id=job_id)]
    assert kinds.count("retrying") == 2 and kinds[-1] == "failed"
    assert await store.finished_counts("default", 0) == (3, 3)


async def test_queue_counts_by_status_with_the_delayed_and_the_oldest_waiting(
    store: Store, clock: FakeClock
) -> None:
    assert await store.queue_counts() == []
    first = await store.submit(spec())
    clock.advance(5)
    await store.submit(spec())
    await store.submit(spec(delay_s=60))
    await store.submit(spec(queue="mail"))
    assert await claim_ids(store, 1) == [first]
    counts = {c.queue: c for c in await store.queue_counts()}
    default, mail = counts["default"], counts["mail"]
    assert default.jobs == {"queued": 2, "running": 1, "completed": 0, "failed": 0, "cancelled": 0}
    assert (default.delayed, default.oldest_ready_at) == (1, clock.now)  # the first is running
    assert (mail.jobs["queued"], mail.delayed, mail.oldest_ready_at) == (1, 0, clock.now)
    clock.advance(61)  # the delayed job is due now; the second has waited longest
    default = next(c for c in await store.queue_counts() if c.queue == "default")
    assert (default.delayed, default.oldest_ready_at) == (0, clock.now - 61)
    assert await store.fail(first, "w1", 1, "boom", retry=False) is not None
    default = next(c for c in await store.queue_counts() if c.queue == "default")
    assert (default.jobs["failed"], default.jobs["running"], default.stalls) == (1, 0, 0)
    stalled = await claim_ids(store, 1)  # ...and its lease runs out: a stall, counted
    clock.advance(31)
    report = await store.sweep("w1")
    assert report is not None and report.requeued == stalled
    default = next(c for c in await store.queue_counts() if c.queue == "default")
    assert (default.jobs["queued"], default.stalls) == (2, 1)


async def test_jittered_backoff_stays_within_bounds(store: Store, clock: FakeClock) -> None:
    backoff = wf.Backoff(initial_s=4.0, factor=2.0, max_s=10.0, jitter=True)
    ids = [await store.submit(spec(max_attempts=5, backoff=backoff)) for _ in range(10)]
    for retry, (lo, hi) in enumerate([(2.0, 4.0), (4.0, 8.0), (5.0, 10.0)], start=1):
        assert sorted(await claim_ids(store, 20)) == sorted(ids)
        for job_id in ids:
            job = await store.fail(job_id, "w1", retry, f"boom {retry}")
            assert job is not None and lo <= job.run_at - clock.now <= hi
        clock.advance(hi)


async def test_no_retry_flag_fails_at_once(store: Store) -> None:
    job_id = await store.submit(spec(max_attempts=5))
    await claim_ids(store)
    job = await store.fail(job_id, "w1", 1, "timed out", retry=False)
    assert job is not None and job.status == "failed"


async def test_only_the_holder_reports(store: Store) -> None:
    job_id = await store.submit(spec())
    await claim_ids(store, worker="w1")
    with pytest.raises(wf.LeaseLostError):
        await store.fail(job_id, "w2", 1, "not mine")
    assert await store.complete("w2", [(job_id, 1, {})]) == [job_id]
    assert await store.renew("w2", {job_id: 1}, 30) == []
    job = await store.get(job_id)
    assert job is not None and job.status == "running"


async def test_rate_limit_is_shared_by_workers(store: Store, clock: FakeClock) -> None:
    rate = Rate.parse("5/1s")
    for _ in range(12):
        await store.submit(spec())
    assert len(await claim_ids(store, 3, "w1", rate=rate)) == 3
    assert len(await claim_ids(store, 3, "w2", rate=rate)) == 2
    got = await store.claim("default", "w3", limit=3, lease_s=30, rate=rate)
    assert got.jobs == [] and got.wait_s == pytest.approx(1.0)
    clock.advance(0.5)
    assert await claim_ids(store, 3, "w3", rate=rate) == []
    clock.advance(0.51)
    assert len(await claim_ids(store, 10, "w3", rate=rate)) == 5


async def test_queue_concurrency_caps_running_jobs(store: Store) -> None:
    ids = [await store.submit(spec()) for _ in range(5)]
    assert len(await claim_ids(store, 3, "w1", queue_concurrency=2)) == 2
    assert await claim_ids(store, 3, "w2", queue_concurrency=2) == []
    await store.complete("w1", [(ids[0], 1, {})])
    assert await claim_ids(store, 3, "w2", queue_concurrency=2) == [ids[2]]


async def test_a_stall_counts_as_an_attempt_and_keeps_the_jobs_place(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec(max_attempts=2))
    clock.advance(1)
    later = await store.submit(spec())
    assert await claim_ids(store, 1, worker="w1") == [job_id]
    clock.advance(10)
    assert await store.renew("w1", {job_id: 1}, 30) == [job_id]  # heartbeat keeps it
    clock.advance(31)
    report = await store.sweep("sweeper")
    assert report is not None and report.requeued == [job_id]
    job = await store.get(job_id)
    assert job is not None and (job.status, job.stalls, job.attempt) == ("queued", 1, 1)
    assert await store.renew("w1", {job_id: 1}, 30) == []  # the old holder lost it
    # it runs before the job queued after it, with its second (and last) attempt
    got = await store.claim("default", "w2", limit=1, lease_s=30)
    assert [(j.id, j.attempt, j.token) for j in got.jobs] == [(job_id, 2, 2)]
    clock.advance(31)
    report = await store.sweep("sweeper")
    assert report is not None and report.failed == [job_id]
    job = await store.get(job_id)
    assert job is not None and (job.status, job.stalls, job.attempt) == ("failed", 2, 2)
    assert "on the last attempt (2 of 2)" in (job.error or "")
    assert await claim_ids(store) == [later]


async def test_max_stalls_is_a_guard_beyond_attempts(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec(max_attempts=10))
    for stall in (1, 2):
        assert await claim_ids(store, worker=f"w{stall}") == [job_id]
        clock.advance(31)
        report = await store.sweep("sweeper", max_stalls=2)
        assert report is not None and report.requeued == [job_id]
    await claim_ids(store, worker="w3")
    clock.advance(31)
    report = await store.sweep("sweeper", max_stalls=2)
    assert report is not None and report.failed == [job_id]
    job = await store.get(job_id)
    assert job is not None and job.status == "failed" and job.stalls == 3
    assert "stalled 3 times" in (job.error or "")


async def test_a_claim_takes_over_an_expired_lease(store: Store, clock: FakeClock) -> None:
    first = await store.submit(spec())
    clock.advance(1)
    second = await store.submit(spec())
    assert await claim_ids(store, 1, worker="w1") == [first]
    clock.advance(31)  # w1's lease expired; no sweeper ran
    got = await store.claim("default", "w2", limit=1, lease_s=30)
    assert [(j.id, j.worker_id, j.token, j.stalls) for j in got.jobs] == [(first, "w2", 2, 1)]
    assert await claim_ids(store, 1, worker="w2") == [second]
    kinds = [e.kind for e in await store.events(job_id=first)]
    assert kinds == ["queued", "running", "stalled", "running"]


async def test_a_fenced_journal_batch_keeps_order_and_refuses_per_job(store: Store) -> None:
    """A worker's flush holds rows of many jobs, interleaved: each held job's rows are
    written in the order given; the rows of a job not held under its token (stale, or
    not running) are refused, and only those."""
    held, stale = await store.submit(spec()), await store.submit(spec())
    await store.submit(spec())  # (claimed too, not in the batch)
    got = {j.id: j.token for j in (await store.claim("default", "w1", limit=3, lease_s=30)).jobs}
    queued = await store.submit(spec())  # not running: its rows are refused
    tokens = {held: got[held], stale: got[stale] + 1, queued: 1}
    rows = [(held, "h1"), (stale, "s1"), (queued, "q1"), (held, "h2"), (stale, "s2"), (held, "h3")]
    assert sorted(await store.append_journal(rows, tokens=tokens)) == sorted([stale, queued])
    assert await store.read_journal(held) == ["h1", "h2", "h3"]
    assert await store.read_journal(stale) == [] and await store.read_journal(queued) == []
    more = [(held, f"h{i}") for i in range(4, 60)]
    assert await store.append_journal(more, tokens=tokens) == []
    assert await store.read_journal(held) == [f"h{i}" for i in range(1, 60)]
    big = [(stale, "s3"), (held, "x" * 70_000), (held, "h60")]  # (a batch too big for one statement)
    assert await store.append_journal(big, tokens=tokens) == [stale]
    assert (await store.read_journal(held))[-2:] == ["x" * 70_000, "h60"]
    assert await store.read_journal(stale) == []
    # one job's batch too big for one JSON statement (PostgreSQL: a statement of its own)
    assert await store.append_journal([(stale, "y" * 70_000)], tokens=tokens) == [stale]
    assert await store.append_journal([(queued, "y" * 70_000)], tokens=tokens) == [queued]
    assert await store.append_journal([(held, "y" * 70_000)], tokens=tokens) == []
    assert (await store.read_journal(held))[-1] == "y" * 70_000
    assert await store.read_journal(stale) == [] and await store.read_journal(queued) == []


async def test_a_stale_token_is_refused_on_every_write(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec())
    [old] = (await store.claim("default", "w1", limit=1, lease_s=30)).jobs
    await store.append_journal([(job_id, "w1 first")], tokens={job_id: old.token})
    await store.record_steps([StepRecord(job_id, "a", 1, "running", run=old.token, worker="w1")])
    clock.advance(31)
    [new] = (await store.claim("default", "w2", limit=1, lease_s=30)).jobs
    assert (new.id, new.token) == (job_id, old.token + 1)
    # w1 comes back (it was paused past its lease): every write of its claim is refused
    assert await store.renew("w1", {job_id: old.token}, 30) == []
    assert await store.append_journal([(job_id, "w1 late")], tokens={job_id: old.token}) == [job_id]
    late_step = StepRecord(job_id, "a", 1, "completed", run=old.token, progress=100, worker="w1")
    assert await store.record_steps([late_step]) == [job_id]
    assert await store.complete("w1", [(job_id, old.token, {"a.out": ["w1"]})]) == [job_id]
    with pytest.raises(wf.LeaseLostError):
        await store.fail(job_id, "w1", old.token, "w1 gives up")
    assert await store.release({job_id: old.token}, "w1") == [job_id]
    with pytest.raises(wf.LeaseLostError):
        await store.clear_journal(job_id, token=old.token)
    # a stale token is refused even under the same worker id (a restarted worker)
    assert await store.renew("w2", {job_id: old.token}, 30) == []
    # the new holder's writes go through
    assert await store.append_journal([(job_id, "w2")], tokens={job_id: new.token}) == []
    assert await store.read_journal(job_id) == ["w1 first", "w2"]
    [step] = await store.steps(job_id)
    assert (step.status, step.worker) == ("interrupted", "w1")  # the takeover ended it
    assert await store.renew("w2", {job_id: new.token}, 30) == [job_id]
    assert await store.complete("w2", [(job_id, new.token, {"a.out": ["w2"]})]) == []
    job = await store.get(job_id)
    assert job is not None and (job.status, job.outputs) == ("completed", {"a.out": ["w2"]})
    assert [e.kind for e in await store.events(job_id=job_id)].count("completed") == 1


async def test_a_batch_writes_the_jobs_still_held(store: Store, clock: FakeClock) -> None:
    kept = await store.submit(spec())
    lost = await store.submit(spec())
    jobs = {j.id: j.token for j in (await store.claim("default", "w1", limit=2, lease_s=30)).jobs}
    await store.cancel(lost)
    refused = await store.append_journal([(kept, "k"), (lost, "l")], tokens=jobs)
    assert refused == [lost]
    assert await store.read_journal(kept) == ["k"] and await store.read_journal(lost) == []
    rows = [StepRecord(j, "a", 1, "completed", run=jobs[j]) for j in (kept, lost)]
    assert await store.record_steps(rows) == [lost]
    assert [s.job_id for s in await store.steps(kept)] == [kept] and await store.steps(lost) == []
    assert await store.complete("w1", [(j, jobs[j], {}) for j in (kept, lost)]) == [lost]
    assert [(await store.get(j)).status for j in (kept, lost)] == ["completed", "cancelled"]  # type: ignore[union-attr]


async def test_a_job_that_leaves_running_has_no_running_step(store: Store, clock: FakeClock) -> None:
    ids = [await store.submit(spec(max_attempts=5)) for _ in range(5)]
    tokens = {j.id: j.token for j in (await store.claim("default", "w1", limit=5, lease_s=30)).jobs}
    for job_id in ids:
        await store.record_steps(
            [
                StepRecord(job_id, "a", 1, "completed", run=tokens[job_id], progress=100, worker="w1"),
                StepRecord(job_id, "b", 1, "running", run=tokens[job_id], progress=40, worker="w1"),
            ]
        )
    done, failed, released, cancelled, stalled = ids
    await store.complete("w1", [(done, tokens[done], {})])
    await store.fail(failed, "w1", tokens[failed], "boom")
    await store.release({released: tokens[released]}, "w1")
    await store.cancel(cancelled)
    await store.renew("w1", {j: tokens[j] for j in ids if j != stalled}, 100)
    clock.advance(31)
    report = await store.sweep("s")
    assert report is not None and report.requeued == [stalled]
    for job_id, why in [
        (done, "completed while the step was running"),
        (failed, "retrying (boom)"),
        (released, "worker w1 gave the job back"),
        (cancelled, "cancelled"),
        (stalled, "worker w1 stopped (lease expired)"),
    ]:
        a, b = await store.steps(job_id)
        assert (a.routine, a.status) == ("a", "completed")
        assert (b.routine, b.status, b.attempt, b.worker, b.progress) == ("b", "interrupted", 1, "w1", 40)
        assert b.completed_at == clock.now or job_id != stalled
        assert why in (b.error or ""), (why, b.error)


async def test_a_rerun_step_updates_its_row(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec())
    await claim_ids(store, worker="w1")
    await store.record_steps([StepRecord(job_id, "a", 1, "running", attempt=1, run=1, worker="w1")])
    clock.advance(31)
    [job] = (await store.claim("default", "w2", limit=1, lease_s=30)).jobs
    rerun = StepRecord(job_id, "a", 1, "completed", attempt=2, run=job.token, progress=100, worker="w2")
    assert await store.record_steps([rerun]) == []
    [row] = await store.steps(job_id)
    assert (row.seq, row.attempt, row.status, row.run, row.worker) == (1, 2, "completed", 2, "w2")


async def test_one_sweeper_at_a_time(store: Store, clock: FakeClock) -> None:
    assert await store.sweep("a", lock_ttl_s=60) is not None
    if store.url.startswith("postgresql"):
        # PostgreSQL: the lock is held for one sweep transaction; exclusion is tested
        # by holding the advisory lock from another session
        import psycopg

        async with await psycopg.AsyncConnection.connect(store.url) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('weirflow:sweeper'))")
            assert await store.sweep("b") is None
        assert await store.sweep("b") is not None
        return
    assert await store.sweep("b", lock_ttl_s=60) is None
    assert await store.sweep("a", lock_ttl_s=60) is not None
    clock.advance(61)
    assert await store.sweep("b", lock_ttl_s=60) is not None


async def test_recover_requeues_a_workers_own_jobs(store: Store) -> None:
    mine = await store.submit(spec())
    await claim_ids(store, 1, "w1")
    theirs = await store.submit(spec())
    await claim_ids(store, 1, "w2")
    assert await store.recover("w1") == [mine]
    job = await store.get(mine)
    assert job is not None and (job.status, job.stalls) == ("queued", 1)
    other = await store.get(theirs)
    assert other is not None and other.status == "running"


async def test_release_gives_jobs_back_without_counting(store: Store) -> None:
    job_id = await store.submit(spec())
    await claim_ids(store)
    assert await store.release({job_id: 1}, "w1") == []
    job = await store.get(job_id)
    assert job is not None and (job.status, job.attempt, job.stalls) == ("queued", 0, 0)


async def test_cancel(store: Store) -> None:
    queued = await store.submit(spec())
    running = await store.submit(spec())
    await store.cancel(queued)
    await claim_ids(store)
    job = await store.cancel(running)
    assert job.status == "cancelled"
    assert await store.renew("w1", {running: 1}, 30) == []  # the worker finds out at its heartbeat
    with pytest.raises(wf.JobError, match="only a queued or running job"):
        await store.cancel(running)
    with pytest.raises(wf.JobError, match="no job"):
        await store.cancel("missing")


async def test_manual_retry(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec(max_attempts=1))
    await claim_ids(store)
    await store.fail(job_id, "w1", 1, "boom")
    job = await store.retry(job_id, from_start=True)
    assert (job.status, job.attempt, job.error, job.from_start) == ("queued", 0, None, True)
    assert await claim_ids(store) == [job_id]
    with pytest.raises(wf.JobError, match="only a failed, cancelled or stalled"):
        await store.retry(job_id)
    clock.advance(31)  # lease expired, not yet swept: a stalled job can be retried
    assert (await store.retry(job_id)).status == "queued"
    assert await store.complete("w1", [(job_id, 2, {})]) == [job_id]  # the old holder no longer counts
    after = await store.get(job_id)
    assert after is not None and after.status == "queued"


async def test_clearing_the_journal_consumes_a_from_start_retry(store: Store, clock: FakeClock) -> None:
    """The run a from-start retry started clears the journal once; a later takeover of that
    run resumes its journal (completed steps are not run again), it does not start over."""
    job_id = await store.submit(spec(max_attempts=5))
    [first] = (await store.claim("default", "w1", limit=1, lease_s=30)).jobs
    await store.append_journal([(job_id, "first run")], tokens={job_id: first.token})
    await store.fail(job_id, "w1", first.token, "boom", retry=False)
    assert (await store.retry(job_id, from_start=True)).from_start
    [again] = (await store.claim("default", "w1", limit=1, lease_s=30)).jobs
    assert again.from_start
    with pytest.raises(wf.LeaseLostError):  # a stale holder neither clears nor consumes it
        await store.clear_journal(job_id, token=first.token)
    still = await store.get(job_id)
    assert still is not None and still.from_start
    assert await store.read_journal(job_id) == ["first run"]
    await store.clear_journal(job_id, token=again.token)
    cleared = await store.get(job_id)
    assert cleared is not None and not cleared.from_start
    await store.append_journal([(job_id, "from-start run")], tokens={job_id: again.token})
    clock.advance(31)  # the new run's worker dies: the next one resumes its journal
    [taken] = (await store.claim("default", "w2", limit=1, lease_s=30)).jobs
    assert (taken.token, taken.from_start) == (again.token + 1, False)
    assert await store.read_journal(job_id) == ["from-start run"]
    assert await store.complete("w2", [(job_id, taken.token, {})]) == []
    done = await store.get(job_id)
    assert done is not None and (done.status, done.from_start) == ("completed", False)


async def test_release_unheld_gives_back_a_lost_claims_jobs(store: Store, clock: FakeClock) -> None:
    """A claim whose reply the worker never got: the jobs it took go back, their attempt
    not counted (they never ran); the jobs the worker holds and other workers' stay."""
    stopped = await store.submit(spec(max_attempts=1))
    [earlier] = (await store.claim("default", "w1", limit=1, lease_s=30)).jobs
    assert earlier.id == stopped  # claimed before: w1 ran it, then stopped it (its attempt ran)
    clock.advance(1)
    since = clock.now  # the lost claim was sent then
    kept, lost, other = [await store.submit(spec(max_attempts=1)) for _ in range(3)]
    mine = {j.id: j for j in (await store.claim("default", "w1", limit=2, lease_s=30)).jobs}
    [theirs] = (await store.claim("default", "w2", limit=1, lease_s=30)).jobs
    held, unheld = sorted(mine)  # the worker got the reply of the claim of one of them only
    assert theirs.id not in mine and {held, unheld} | {theirs.id} == {kept, lost, other}
    assert await store.release_unheld("w1", [held], claimed_since=since) == [unheld]
    left = await store.get(stopped)
    assert left is not None and (left.status, left.attempt) == ("running", 1)
    job = await store.get(unheld)
    assert job is not None and (job.status, job.attempt, job.stalls) == ("queued", 0, 0)
    for still in (held, theirs.id):
        running = await store.get(still)
        assert running is not None and running.status == "running"
    assert await store.release_unheld("w1", [held], claimed_since=since) == []
    [again] = (await store.claim("default", "w3", limit=1, lease_s=30)).jobs
    assert (again.id, again.attempt) == (unheld, 1)  # its one attempt is still to run
    assert await store.complete("w3", [(unheld, again.token, {})]) == []
    assert await store.complete("w1", [(held, mine[held].token, {})]) == []


async def test_retention(store: Store, clock: FakeClock) -> None:
    def finish(job_id: str, ok: bool) -> object:
        if ok:
            return store.complete("w1", [(job_id, 1, {})])
        return store.fail(job_id, "w1", 1, "boom", retry=False)

    old_done = [await store.submit(spec()) for _ in range(3)]
    old_failed = await store.submit(spec())
    await claim_ids(store, 10)
    for job_id in old_done:
        await store.record_steps([StepRecord(job_id, "a", 1, "completed")])
        await finish(job_id, True)  # type: ignore[misc]
    await finish(old_failed, False)  # type: ignore[misc]
    assert len(await store.steps(old_done[0])) == 1
    clock.advance(100)
    new_done = [await store.submit(spec()) for _ in range(3)]
    new_failed = await store.submit(spec())
    await claim_ids(store, 10)
    for job_id in new_done:
        await finish(job_id, True)  # type: ignore[misc]
        clock.advance(1)
    await finish(new_failed, False)  # type: ignore[misc]
    clock.advance(10)
    report = await store.sweep(
        "s", retention=Retention(keep_completed_s=50, keep_completed_count=2, keep_failed_s=200)
    )
    assert report is not None and report.deleted == 4
    left = {j.id for j in await store.list_jobs()}
    assert left == {*new_done[1:], old_failed, new_failed}
    assert await store.steps(old_done[0]) == []
    report = await store.sweep("s", retention=Retention(keep_failed_s=50))
    assert report is not None and report.deleted == 1
    assert old_failed not in {j.id for j in await store.list_jobs()}


async def test_a_purged_job_takes_its_steps_journal_and_events_with_it(
    store: Store, clock: FakeClock
) -> None:
    old, kept = await store.submit(spec()), await store.submit(spec())
    await claim_ids(store, 10)
    for job_id in (old, kept):
        await store.record_steps([StepRecord(job_id, "a", 1, "completed")])
        assert await store.append_journal([(job_id, '{"r": 1}')], tokens={job_id: 1}) == []
        await store.complete("w1", [(job_id, 1, {})])
        clock.advance(100 if job_id == old else 10)
    report = await store.sweep("s", retention=Retention(keep_completed_s=50))
    assert report is not None and report.deleted == 1
    assert await store.steps(old) == [] and await store.read_journal(old) == []
    assert await store.events(job_id=old) == []
    assert len(await store.steps(kept)) == 1 and await store.read_journal(kept) == ['{"r": 1}']
    assert [e.kind for e in await store.events(job_id=kept)] == ["queued", "running", "completed"]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_an_event_for_a_job_the_store_does_not_hold_is_refused(store: Store) -> None:
    with pytest.raises(wf.StoreRefusedError):
        await store.add_event("no-such-job", "default", "alert.long_running", {})
    assert await store.events(job_id="no-such-job") == []


async def test_clean_applies_retention_now_even_while_a_sweeper_holds_the_lock(
    store: Store, clock: FakeClock
) -> None:
    old_done, old_failed, old_cancelled = [await store.submit(spec()) for _ in range(3)]
    await claim_ids(store, 10)
    await store.record_steps([StepRecord(old_done, "a", 1, "completed")])
    await store.complete("w1", [(old_done, 1, {})])
    await store.fail(old_failed, "w1", 1, "boom", retry=False)
    await store.cancel(old_cancelled)
    clock.advance(100)
    new_done = await store.submit(spec())
    queued = await store.submit(spec())
    await claim_ids(store, 1)
    await store.complete("w1", [(new_done, 1, {})])
    assert await store.sweep("worker-sweeper", lock_ttl_s=3600) is not None  # holds the lock
    assert await store.clean(Retention(keep_completed_s=50)) == 1
    assert await store.steps(old_done) == [] and await store.events(job_id=old_done) == []
    assert {j.id for j in await store.list_jobs()} == {old_failed, old_cancelled, new_done, queued}
    assert await store.clean(Retention(keep_failed_s=50)) == 2  # failed and cancelled
    clock.advance(1)
    assert await store.clean(Retention(keep_completed_s=0, keep_failed_s=0)) == 1  # never a queued job
    assert [j.id for j in await store.list_jobs()] == [queued]


async def test_steps_rows(store: Store) -> None:
    job_id = await store.submit(spec())
    await claim_ids(store)
    rows = [
        StepRecord(
            job_id,
            "a",
            1,
            "completed",
            progress=100,
            message="done",
            started_at=1.0,
            completed_at=2.0,
            worker="w1",
        ),
        StepRecord(job_id, "b", 1, "running", progress=40, message="cloning", started_at=2.0, worker="w1"),
    ]
    await store.record_steps(rows)
    rows[1].status, rows[1].progress, rows[1].completed_at = "failed", 60.0, 3.0
    rows[1].error = "ValueError: x"
    await store.record_steps([rows[1]])
    assert await store.record_steps([StepRecord("ghost", "a", 1, "completed")]) == ["ghost"]  # unknown job
    got = await store.steps(job_id)
    assert [s.to_dict() for s in got] == [r.to_dict() for r in rows]


async def test_list_filters_and_order(store: Store, clock: FakeClock) -> None:
    a = await store.submit(spec())
    clock.advance(1)
    b = await store.submit(spec(queue="other"))
    clock.advance(1)
    c = await store.submit(spec())
    assert [j.id for j in await store.list_jobs()] == [c, b, a]
    assert [j.id for j in await store.list_jobs(queue="default")] == [c, a]
    await claim_ids(store, 1)
    assert [j.id for j in await store.list_jobs(status="running")] == [a]
    assert [j.id for j in await store.list_jobs(limit=1)] == [c]
    assert [j.id for j in await store.list_jobs(limit=1, offset=1)] == [b]
    assert [j.id for j in await store.list_jobs(offset=3)] == []
    clock.advance(1)
    d = await store.submit(JobSpec(flow="g", inputs={}))
    assert [j.id for j in await store.list_jobs(flow="g")] == [d]
    assert [j.id for j in await store.list_jobs(flow="f", queue="default")] == [c, a]
    assert [j.id for j in await store.list_jobs(flow="f", offset=1, limit=1)] == [b]


async def test_alert_queries(store: Store, clock: FakeClock) -> None:
    job_id = await store.submit(spec())
    await claim_ids(store)
    clock.advance(100)
    assert [j.id for j in await store.running_since(clock.now - 50)] == [job_id]
    assert await store.running_since(clock.now - 200) == []
    await store.add_event(None, "default", "alert.failure_rate", {"rate": 0.5})
    [event] = await store.events(kind="alert.failure_rate")
    assert event.job_id is None and event.data == {"rate": 0.5} and event.at == clock.now


async def test_wait_for_jobs_wakes_on_submit(store: Store) -> None:
    waiter = asyncio.create_task(store.wait_for_jobs("default", 30))
    await asyncio.sleep(0)
    await store.submit(spec())
    async with asyncio.timeout(10):
        await waiter


async def test_journal_records(store: Store, clock: FakeClock) -> None:
    a = await store.submit(spec())
    b = await store.submit(spec())
    await store.append_journal([(a, '{"t":"enq","n":1}'), (b, '{"t":"enq"}'), (a, '{"t":"done","n":2}')])
    await store.append_journal([(a, f'{{"n":{i}}}') for i in range(3, 50)])
    records = await store.read_journal(a)
    assert records[:2] == ['{"t":"enq","n":1}', '{"t":"done","n":2}']
    assert records[2:] == [f'{{"n":{i}}}' for i in range(3, 50)]
    with pytest.raises(wf.StoreRefusedError, match="no-such-job"):  # (sent again, it fails again)
        await store.append_journal([(a, '{"lost": true}'), ("no-such-job", "{}")])
    with pytest.raises(wf.StoreRefusedError, match="no-such-job"):  # (one row: SQLite writes it inline)
        await store.append_journal([("no-such-job", "{}")])
    assert len(await store.read_journal(a)) == 49  # nothing of the failed batch
    await store.clear_journal(a)
    assert await store.read_journal(a) == [] and await store.read_journal(b) == ['{"t":"enq"}']
    await claim_ids(store, 10)
    await store.complete("w1", [(b, 1, {})])
    clock.advance(10)
    await store.sweep("s", retention=Retention(keep_completed_s=1))
    assert await store.read_journal(b) == []  # retention takes a job's journal with it


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_notify_wakes_a_worker_of_another_connection(make_store: StoreFactory) -> None:
    waiting, submitting = await make_store(), await make_store()
    await waiting.listening()  # type: ignore[attr-defined]  # PostgresStore only
    waiter = asyncio.create_task(waiting.wait_for_jobs("default", 60))
    await asyncio.sleep(0)
    await submitting.submit(spec())
    async with asyncio.timeout(10):
        await waiter


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_worker_waiting_for_jobs_is_not_sent_every_outcome(make_store: StoreFactory) -> None:
    """A worker waits for jobs, never for an outcome: it is not sent a notification for
    each job that another worker finishes (with 4 workers that was 4 per job)."""
    waiting, writing = await make_store(), await make_store()
    await waiting.listening()  # type: ignore[attr-defined]  # PostgresStore only
    heard: list[str] = []
    notify = waiting._outcomes.notify  # type: ignore[attr-defined]
    waiting._outcomes.notify = lambda job_id: (heard.append(job_id), notify(job_id))  # type: ignore[attr-defined]
    ids = [await writing.submit(spec()) for _ in range(20)]
    await writing.claim("default", "w1", limit=20, lease_s=30)
    assert await writing.complete("w1", [(job_id, 1, {}) for job_id in ids]) == []
    # a submit after the outcomes: once its wake-up is heard, any outcome sent before it was
    waiter = asyncio.create_task(waiting.wait_for_jobs("default", 60))
    await asyncio.sleep(0)
    await writing.submit(spec())
    async with asyncio.timeout(10):
        await waiter
    assert heard == []


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"flow": ""}, "flow must be a non-empty string"),
        ({"flow": "a\x00b"}, "flow: strings must not contain NUL"),
        ({"queue": "q\ud800"}, "queue: strings must be valid Unicode"),
        ({"idempotency_key": "k\x00"}, "idempotency_key: strings must not contain NUL"),
        (
            {"inputs": {"a.inp": ["ok", {"deep": ["x\x00"]}]}},
            'inputs["a.inp"][1]["deep"][0]: strings must not contain NUL',
        ),
        (
            {"inputs": {"a.inp": [{"k\udc80": 1}]}},
            'inputs["a.inp"][0]["k\\udc80"]: key: strings must be valid',
        ),
        (
            {"inputs": {"a.item": [2**64]}},
            'inputs["a.item"][0]: integer 18446744073709551616 is out of range',
        ),
        (
            {"inputs": {"a.item": [1, {"n": -(2**63) - 1}]}},
            'inputs["a.item"][1]["n"]: integer -9223372036854775809',
        ),
        ({"inputs": {"a.item": [float("nan")]}}, 'inputs["a.item"][0]: nan is not a JSON number'),
        ({"inputs": {"a.item": [[float("-inf")]]}}, 'inputs["a.item"][0][0]: -inf is not a JSON number'),
        ({"inputs": {"a.item": [(1, 2)]}}, 'inputs["a.item"][0]: a tuple would come back as a list'),
        ({"inputs": {"a.item": [{1: "x"}]}}, 'inputs["a.item"][0]: keys must be strings, not int'),
        (
            {"inputs": {"a.item": [{"at": datetime.datetime(2026, 1, 1)}]}},
            r'inputs["a.item"][0]["at"]: a value of type datetime',
        ),
        ({"inputs": {"a.item": [uuid.UUID(int=1)]}}, 'inputs["a.item"][0]: a value of type UUID is not JSON'),
        ({"inputs": {"a.item": [_nested(300)]}}, "must not nest more than 253 levels"),
    ],
)
def test_a_job_spec_every_backend_cannot_store_is_refused(fields: dict[str, Any], message: str) -> None:
    """PostgreSQL cannot hold NUL characters, no store can encode unpaired surrogates, the
    journal cannot hold integers past 64 bits, and NaN, tuples or datetimes would not come
    back as they went in: such a job is refused when it is made, the same on every
    backend, naming where the problem is, not at submit on one of them or when its
    journal is written."""
    spec: dict[str, Any] = {"flow": "f", "inputs": {}, **fields}
    with pytest.raises(wf.JobError, match=re.escape(message)) as caught:
        JobSpec(**spec)
    if "inputs" in fields:
        assert isinstance(caught.value, wf.StoreError) and isinstance(caught.value, wf.UnstorableError)


@pytest.mark.parametrize(
    "item",
    [2**64 - 1, -(2**63), 1e16, -1.5e300, 5e-324, 1e-300, 0.1, "tab\t\\u0000 not a NUL", {"": [None, True]}],
)
async def test_the_edges_of_what_is_storable_come_back_exactly(store: Store, item: Any) -> None:
    """What is accepted comes back equal and of the same type, on every backend (PostgreSQL
    ``jsonb`` would turn ``1e16`` into an integer if it were written in exponent form)."""
    job_id = await store.submit(JobSpec(flow="f", inputs={"a.item": [item]}))
    job = await store.get(job_id)
    assert job is not None
    [back] = job.inputs["a.item"]
    assert back == item and type(back) is type(item)


async def test_outputs_come_back_with_their_types(store: Store) -> None:
    """Outputs too (PostgreSQL ``jsonb`` turned an output of ``1e16`` into an integer: found in review)."""
    job_id = await store.submit(spec())
    running = (await store.claim("default", "w1", limit=1, lease_s=30)).jobs[0]
    outputs = {"b.out": [1e16, 2**64 - 1, 0.1, {"x": [1e300]}]}
    assert await store.complete("w1", [(job_id, running.token, outputs)]) == []
    done = await store.get(job_id)
    assert done is not None and done.outputs == outputs
    assert [type(v) for v in done.outputs["b.out"]] == [float, int, float, dict]
    assert type(done.outputs["b.out"][3]["x"][0]) is float


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_postgres_reads_integers_past_64_bits_exactly(store: Store, store_url: str) -> None:
    """``jsonb`` read back by the store's fast JSON reader: an integer past 64 bits (a job
    stored before such items were refused) keeps its value and type (orjson alone makes it
    a float); the rest of the value is read as usual."""
    job_id = await store.submit(spec())
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE wf_jobs SET inputs = %s::jsonb WHERE id = %s",
            ('{"a.item": [18446744073709551616, -99999999999999999999, 0.5, "x"]}', job_id),
        )
    job = await store.get(job_id)
    assert job is not None
    assert job.inputs == {"a.item": [2**64, -99999999999999999999, 0.5, "x"]}
    assert [type(v) for v in job.inputs["a.item"]] == [int, int, float, str]
    # 19 digits below -2**63, alone in the text (orjson reads it as a float without error)
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE wf_jobs SET inputs = %s::jsonb WHERE id = %s",
            ('{"a.item": [-9223372036854775809, -9223372036854775808, 1]}', job_id),
        )
    job = await store.get(job_id)
    assert job is not None and job.inputs == {"a.item": [-(2**63) - 1, -(2**63), 1]}
    assert [type(v) for v in job.inputs["a.item"]] == [int, int, int]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_postgres_keeps_what_a_job_spec_accepts(store: Store) -> None:
    text = 'tab\t, quote", backslash\\u0000, emoji \U0001f600, accents éà'
    job_id = await store.submit(JobSpec(flow=text, inputs={"a.inp": [text, {text: text}]}, queue=text))
    job = await store.get(job_id)
    assert job is not None
    assert (job.flow, job.queue, job.inputs) == (text, text, {"a.inp": [text, {text: text}]})


async def test_submitted_fields_come_back_exactly(store: Store, clock: FakeClock) -> None:
    # what a batched submit writes comes back as given: times that are not short decimals,
    # floats written in exponent form, big and negative integers, and texts with quotes,
    # backslashes, brackets, commas and characters past ASCII (PostgreSQL reads its batch
    # as one JSON text)
    clock.now = 1_764_648_000.123_456_7
    odd = 'k "q" \\ ],[ , é 漢 \U0001f600'
    inputs = {"a.x": [1e16, 0.1, -(2**62), 2**63 - 1, odd, {"n": None, "e": 1.5e-7}]}
    specs = [
        spec(
            inputs=inputs,
            idempotency_key=odd,
            delay_s=0.1,
            timeout_s=1e-05,
            priority=-7,
            backoff=NO_JITTER,
            max_attempts=5,
        ),
        spec(flow=odd, queue=odd, delay_s=1e-9),
    ]
    ids = [job_id for job_id, created in await store.submit_many(specs) if created]
    assert len(ids) == 2
    first, second = [await store.get(job_id) for job_id in ids]
    assert first is not None and second is not None
    assert first.inputs == inputs and [type(v) for v in first.inputs["a.x"]] == [
        float,
        float,
        int,
        int,
        str,
        dict,
    ]
    assert (first.idempotency_key, first.run_at, first.timeout_s) == (odd, clock.now + 0.1, 1e-05)
    assert (first.priority, first.backoff, first.max_attempts) == (-7, NO_JITTER, 5)
    assert (second.flow, second.queue, second.run_at, second.timeout_s) == (odd, odd, clock.now + 1e-9, None)
    # the same key in the same queue: the job that holds it
    assert await store.submit_once(specs[0]) == (first.id, False)
