"""What the Redis store adds to the shared suite: a server restart with AOF on loses no
acknowledged write, every call has a deadline, the URL's password is never printed, and
read-only commands write nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import weirflow as wf
from weirflow.durable import JobSpec, StepRecord, Store, open_store
from weirflow.durable.redis_store import RedisStore
from weirflow.durable.worker import Worker

from ..cancelling import cancel_outcomes
from ..redisserver import RedisServer, started_server
from . import flows
from .helpers import poll_store
from .procs import WorkerProcess, cli


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own (it is killed, stopped or given a password)."""
    server = started_server()
    yield server
    server.destroy()


async def _dbsize(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        return int(await client.dbsize())
    finally:
        await client.aclose()


#: how long before a ``kill -9`` Redis' ``appendfsync everysec`` may have answered writes it
#: had not yet written: while a background fsync is still running it postpones the AOF's
#: write(2) for up to 2 s (``flushAppendOnlyFile``, redis/redis src/aof.c), replies going
#: out meanwhile; plus a second for its cached clock (whole seconds) and the kill itself
EVERYSEC_WINDOW_S = 3.0


@pytest.mark.parametrize("appendfsync", ["everysec", "always"])
async def test_a_restart_with_aof_keeps_what_redis_promises(appendfsync: str) -> None:
    """``kill -9`` of ``redis-server`` under submits and completions, then a restart on the same
    AOF: with ``always`` every acknowledged job and completion is there; with ``everysec``
    every one acknowledged more than ``EVERYSEC_WINDOW_S`` before the kill, and what is lost
    is a tail (the AOF is a prefix of the writes)."""
    server = started_server(appendonly=True, appendfsync=appendfsync)
    store: Store = open_store(server.url(0), timeout_s=1.0, connect_timeout_s=0.5)
    await store.open()
    submitted: list[tuple[float, str]] = []  # (when, id) of each acknowledged submit
    completed: list[tuple[float, str]] = []  # (when, id) of each acknowledged completion
    claimed: list[tuple[str, int]] = []  # (job id, fencing token) of every claim answered
    failures = 0
    killed = asyncio.Event()
    killed_at = 0.0
    try:

        async def submit() -> None:
            nonlocal failures
            n = 0
            while not killed.is_set() or n % 7:  # (keeps going a little into the outage)
                n += 1
                try:
                    job_id = await store.submit(JobSpec("f", {"a.x": [n]}))
                    submitted.append((time.monotonic(), job_id))
                except wf.StoreError:
                    failures += 1
                    if killed.is_set():
                        return

        async def work() -> None:
            nonlocal failures
            while not killed.is_set():
                try:
                    claim = await store.claim("default", "w1", limit=5, lease_s=30)
                    claimed.extend((j.id, j.token) for j in claim.jobs)
                    if claim.jobs:
                        refused = await store.complete(
                            "w1", [(j.id, j.token, {"ok": [1]}) for j in claim.jobs]
                        )
                        now = time.monotonic()
                        completed.extend((now, j.id) for j in claim.jobs if j.id not in refused)
                except wf.StoreError:
                    failures += 1
                    return

        async def crash() -> None:
            # kill -9 once enough is acknowledged (some of it before the everysec window),
            # with submits and completions in flight
            await poll_store(lambda: _enough(submitted, completed), timeout_s=60)
            nonlocal killed_at
            killed_at = time.monotonic()
            await asyncio.to_thread(server.kill)
            killed.set()

        await asyncio.gather(submit(), work(), crash())
        assert failures >= 1  # the crash was seen mid-way
        server.start()  # same port, same data folder: the AOF is replayed
        # the same store object reconnects by itself
        after = await store.submit(JobSpec("f", {"a.x": ["after"]}))
        states = {j.id: j.status for j in await store.list_jobs(limit=100_000)}
        window = 0.0 if appendfsync == "always" else EVERYSEC_WINDOW_S
        kept = [job_id in states for _, job_id in submitted]
        assert kept == sorted(kept, reverse=True), "a lost submit before a kept one"
        for at, job_id in submitted:
            if at < killed_at - window:
                assert job_id in states, (
                    f"job {job_id} acknowledged {killed_at - at:.2f} s before the kill lost"
                )
        for at, job_id in completed:
            if at < killed_at - window:
                assert states.get(job_id) == "completed", (job_id, states.get(job_id))
        assert after in states and states[after] == "queued"
        # nothing was taken twice: each job was handed out by one claim, its first (token 1)
        times = Counter(job_id for job_id, _ in claimed)
        assert claimed and [j for j, n in times.items() if n > 1] == []
        assert {token for _, token in claimed} == {1}
        assert {job_id for _, job_id in completed} <= set(times)
        assert {s for _, job_id in submitted if (s := states.get(job_id))} <= {
            "queued",
            "running",
            "completed",
        }
    finally:
        await store.close()
        server.destroy()


async def _enough(submitted: list[tuple[float, str]], completed: list[tuple[float, str]]) -> bool:
    return (
        len(submitted) >= 300
        and len(completed) >= 100
        and time.monotonic() - submitted[0][0] > EVERYSEC_WINDOW_S + 1.0
        and time.monotonic() - completed[0][0] > EVERYSEC_WINDOW_S + 1.0
    )


async def test_every_call_has_a_deadline_and_the_store_reconnects(own_server: RedisServer) -> None:
    store = open_store(own_server.url(1), timeout_s=0.3, connect_timeout_s=0.3)
    await store.open()
    try:
        job_id = await store.submit(JobSpec("f", {}))
        own_server.pause()  # SIGSTOP: the server takes connections but answers nothing
        try:
            for call in (store.get(job_id), store.claim("default", "w", limit=1, lease_s=5)):
                began = time.monotonic()
                with pytest.raises(wf.StoreError):
                    await call
                assert time.monotonic() - began < 5.0  # its deadline (0.6 s), not redis-py's (none)
        finally:
            own_server.cont()
        job = await store.get(job_id)  # a new connection replaces the one that timed out
        assert job is not None and job.status == "queued"
        own_server.kill()
        with pytest.raises(wf.StoreError):
            await store.get(job_id)
        own_server.start()  # (persistence off: the data is gone, the store works again)
        assert await store.get(job_id) is None
        assert await store.submit(JobSpec("f", {}))
    finally:
        await store.close()


async def test_the_password_of_the_url_is_never_printed(own_server: RedisServer, tmp_path: Path) -> None:
    client = aioredis.Redis.from_url(own_server.url(0))
    await client.config_set("requirepass", "s3cret-pw")
    await client.aclose()
    url = f"redis://:s3cret-pw@127.0.0.1:{own_server.port}/2"
    store = open_store(url)
    assert "s3cret-pw" not in store.url and ":***@" in store.url
    wrong = open_store(f"redis://:wrong-pw@127.0.0.1:{own_server.port}/2")
    with pytest.raises(wf.StoreError) as refused:
        await wrong.open()
    assert "wrong-pw" not in str(refused.value)
    bad = cli("jobs", "list", "--store", f"redis://:wrong-pw@127.0.0.1:{own_server.port}/2")
    # a refused password cannot succeed on retry: bad usage, exit 2 (as for PostgreSQL)
    assert bad.returncode == 2 and "wrong-pw" not in bad.stdout + bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    with WorkerProcess(url, tmp_path / "w.log", "--worker-id", "w1") as worker:
        await poll_store(lambda: _started(worker), timeout_s=30)
        assert worker.terminate() == 0
    out = worker.output()
    assert "s3cret-pw" not in out and ":***@" in out


async def test_a_password_in_the_query_string_is_never_printed(own_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(own_server.url(0))
    await client.config_set("requirepass", "s3cret-pw")
    await client.aclose()
    base = f"redis://127.0.0.1:{own_server.port}/2"
    store = open_store(f"{base}?password=s3cret-pw")
    assert "s3cret-pw" not in store.url and "password=***" in store.url
    await store.open()  # (the password is used, only not shown)
    try:
        assert await store.submit(JobSpec("f", {}))
    finally:
        await store.close()
    wrong = open_store(f"{base}?db=2&password=wrong-pw")
    assert "wrong-pw" not in wrong.url
    with pytest.raises(wf.StoreError) as refused:
        await wrong.open()
    assert "wrong-pw" not in str(refused.value) and "password=***" in str(refused.value)


async def _started(worker: WorkerProcess) -> bool:
    return "worker_started" in worker.output()


def test_reading_commands_write_nothing(redis_url: str) -> None:
    for command in (["list"], ["show", "abc"], ["steps", "abc"], ["wait", "abc", "--timeout", "0.1"]):
        p = cli("jobs", *command, "--store", redis_url)
        assert p.returncode in (0, 2), p.stderr
    assert asyncio.run(_dbsize(redis_url)) == 0
    p = cli("jobs", "submit", "one", "--input", 'a.item={"x": 1}', "--store", redis_url)
    assert p.returncode == 0, p.stderr
    assert asyncio.run(_dbsize(redis_url)) > 0


class _Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _renew_before_first_put(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch, job_id: str, token: int
) -> list[list[str]]:
    """Make w1's renewal land between a compare-and-set change's read of the job and its
    write (the ``PUT`` script): the window where a late heartbeat meets the sweeper.
    Returns what each injected renewal answered."""
    run = store._run
    answers: list[list[str]] = []

    async def injected(name: str, args: list[Any], *, retry: bool = False) -> Any:
        if name == "PUT" and not answers:
            answers.append(await store.renew("w1", {job_id: token}, 10))
        return await run(name, args, retry=retry)

    monkeypatch.setattr(store, "_run", injected)
    return answers


async def _claimed_late(redis_url: str, clock: _Clock) -> tuple[RedisStore, str, int]:
    """A store with one job claimed by w1 whose heartbeat is half a second late."""
    store = RedisStore(redis_url, clock=clock)
    await store.open()
    job_id = await store.submit(JobSpec("f", {}))
    claim = await store.claim("default", "w1", limit=1, lease_s=10)
    clock.now += 10.5
    return store, job_id, claim.jobs[0].token


async def test_a_renewal_racing_the_sweeper_is_not_also_taken_over(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    store, job_id, token = await _claimed_late(redis_url, clock)
    try:
        renewed = _renew_before_first_put(store, monkeypatch, job_id, token)
        report = await store.sweep("sweeper")
        assert report is not None
        assert renewed == [[job_id]]  # w1 was told it still holds the job...
        assert report.requeued == [] and report.failed == []  # ...so the sweeper must not take it
        job = await store.get(job_id)
        assert job is not None and job.status == "running" and job.worker_id == "w1"
        assert (await store.claim("default", "w2", limit=1, lease_s=10)).jobs == []
        assert await store.renew("w1", {job_id: token}, 10) == [job_id]
    finally:
        await store.close()


async def test_a_renewal_racing_a_manual_retry_is_not_also_requeued(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    store, job_id, token = await _claimed_late(redis_url, clock)
    try:
        renewed = _renew_before_first_put(store, monkeypatch, job_id, token)
        with pytest.raises(wf.JobError, match="running"):
            await store.retry(job_id)
        assert renewed == [[job_id]]
        job = await store.get(job_id)
        assert job is not None and job.status == "running" and job.worker_id == "w1"
        assert await store.renew("w1", {job_id: token}, 10) == [job_id]
    finally:
        await store.close()


def _start(routine: str) -> str:
    return json.dumps({"t": "start", "routine": routine, "seq": 1, "attempt": 1, "consumed": None})


def _done(routine: str) -> str:
    return json.dumps(
        {
            "t": "done",
            "routine": routine,
            "seq": 1,
            "attempt": 1,
            "status": "completed",
            "final": True,
            "on_end": None,
            "state": None,
            "emitted": [],
            "error": None,
        }
    )


async def _killed_after_the_journal(redis_url: str, clock: _Clock) -> tuple[RedisStore, str, int]:
    """w1 ran a job whose journal finished ``a`` and ``c`` and started ``b``, and died with
    its last step rows unwritten: ``a``'s row still says running, ``c`` has none."""
    store = RedisStore(redis_url, clock=clock)
    await store.open()
    job_id = await store.submit(JobSpec("f", {}, max_attempts=3))
    token = (await store.claim("default", "w1", limit=1, lease_s=10)).jobs[0].token
    rows = [StepRecord(job_id, r, 1, "running", attempt=1, run=token, worker="w1") for r in "ab"]
    assert await store.record_steps(rows) == []
    records = [_start("a"), _done("a"), _start("b"), _start("c"), _done("c")]
    assert await store.append_journal([(job_id, r) for r in records], tokens={job_id: token}) == []
    return store, job_id, token


def _outcomes(steps: list[StepRecord]) -> dict[str, tuple[str, int, str | None]]:
    return {s.routine: (s.status, s.attempt, s.worker) for s in steps}


@pytest.mark.parametrize("takeover", ["recover", "sweep"])
async def test_a_takeover_leaves_the_steps_the_journal_finished_completed(
    redis_url: str, takeover: str
) -> None:
    clock = _Clock()
    store, job_id, _ = await _killed_after_the_journal(redis_url, clock)
    try:
        if takeover == "recover":
            assert await store.recover("w1") == [job_id]
        else:
            clock.now += 11
            report = await store.sweep("sweeper")
            assert report is not None and report.requeued == [job_id]
        steps = await store.steps(job_id)
        assert _outcomes(steps) == {
            "a": ("completed", 1, "w1"),
            "b": ("interrupted", 1, "w1"),
            "c": ("completed", 1, "w1"),
        }
        b = next(s for s in steps if s.routine == "b")
        assert b.completed_at == clock.now and "w1" in (b.error or "")
    finally:
        await store.close()


async def test_a_journal_record_landing_during_a_takeover_is_in_the_rows(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """w1's last journal append (b's ``done``) lands between the takeover's read of the
    journal and its write: the write is decided again, so ``b`` is completed too."""
    clock = _Clock()
    store, job_id, token = await _killed_after_the_journal(redis_url, clock)
    run = store._run
    appended: list[list[str]] = []

    async def injected(name: str, args: list[Any], *, retry: bool = False) -> Any:
        if name == "PUT" and not appended:
            appended.append(await store.append_journal([(job_id, _done("b"))], tokens={job_id: token}))
        return await run(name, args, retry=retry)

    monkeypatch.setattr(store, "_run", injected)
    try:
        assert await store.recover("w1") == [job_id]
        assert appended == [[]]
        assert _outcomes(await store.steps(job_id)) == {
            "a": ("completed", 1, "w1"),
            "b": ("completed", 1, "w1"),
            "c": ("completed", 1, "w1"),
        }
    finally:
        await store.close()


async def test_a_cancelled_call_raises_cancelled_wherever_the_cancel_lands(redis_url: str) -> None:
    """A worker's sweeper and scheduler end at their task's cancel at SIGTERM: a store call
    cancelled at any point raises CancelledError, never returns (or fails) as if nothing
    happened (Python 3.11's wait_for, used by redis-py for every write, can drop a cancel:
    the worker then looped on and did not exit)."""
    store = RedisStore(redis_url)
    await store.open()
    try:
        calls = (
            lambda: store.sweep("w1", max_stalls=3, lock_ttl_s=30.0),
            lambda: store.fire_schedules("default"),
            lambda: store.get("nope"),
        )
        outcomes = await cancel_outcomes(calls, steps=30)
        assert set(outcomes) == {"cancelled", "finished first"}, outcomes
    finally:
        await store.close()


async def test_a_stopped_worker_ends_wherever_the_stop_lands(redis_url: str) -> None:
    """A Redis-store worker stopped (SIGTERM in ``weirflow worker``) right after it starts,
    while idle waiting for jobs, or during a wake-up ends within its grace: its loops'
    store calls cannot drop the cancel of the shutdown."""
    store = RedisStore(redis_url)
    await store.open()
    try:
        for steps in range(80):
            # (sweeping at once again and again: the stop's cancel lands in its store calls)
            worker = Worker(
                store, [flows.noop], worker_id=f"w{steps}", shutdown_grace_s=0.5, sweep_every_s=0.001
            )
            task = asyncio.get_running_loop().create_task(worker.run())
            if steps % 2:  # a wake-up: a job submitted just before the stop
                await store.submit(JobSpec("noop", {}))
            for _ in range(steps):
                await asyncio.sleep(0)
            worker.stop()
            async with asyncio.timeout(10.0):  # its grace (0.5 s) and a store call's deadline
                await task
    finally:
        await store.close()
