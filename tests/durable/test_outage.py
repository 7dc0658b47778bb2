"""PostgreSQL outages (a real server stopped and started again) under running jobs.

What a lease-based store can promise, and what these tests hold it to:

- a restart shorter than a job's lease costs its worker nothing: the store reconnects as
  soon as the server is back and the heartbeat renews the lease before it runs out;
- so a job whose last step ended while the server was down, and whose outcome could
  not be written, is completed by its worker once the server is back, and not run again;
- across an outage longer than the lease, the steps whose ``done`` reached the journal
  before it never run again, whoever finishes the job;
- the step that ended *during* that outage may run again, and that is right: its end
  never reached the store (a job's last step is committed by the outcome write itself),
  the lease ran out, and the store cannot tell a worker cut off from it from a dead one,
  so another worker takes the job over. What must hold then is that the two attempts
  never run at the same time, the first worker's late writes are refused (fencing) and
  the outputs hold the item once;
- a step still running when its worker's lease could have run out (no renewal confirmed
  within the lease of when it was sent) is stopped by that worker itself, before another
  worker may take the job over.

(An earlier version of this file demanded, of an outage longer than the lease, that the
step which ended during it ran once: that asks the store to keep a lease for a holder it
could not hear from past the lease's end, which only holds when that holder happens to
reconnect before the other worker does.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from weirflow.durable import JobRecord, JobSpec, Store, open_store
from weirflow.durable.journal import DurableJournal
from weirflow.errors import StoreError

from .helpers import poll_store
from .pgserver import PgServer, started_server
from .procs import WorkerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    """A server of this module's own: the tests stop it."""
    s = started_server()
    yield s
    s.destroy()


@pytest.fixture(autouse=True)
def _server_up_after(server: PgServer) -> Iterator[None]:
    """A test that failed during its outage leaves the server running for the next."""
    yield
    try:
        psycopg.connect(server.url(), connect_timeout=2).close()
    except psycopg.OperationalError:
        server.start()


async def _open(url: str) -> Store:
    store = open_store(url)
    await store.open()
    return store


async def test_a_restart_shorter_than_the_lease_does_not_cost_the_holder_its_job(server: PgServer) -> None:
    """The holder's heartbeat renews during and after an 8 s restart (every 0.1 s, as the
    worker's does after a failure); another worker sweeps as soon as the 12.5 s lease it
    had would have run out: the job is still the holder's. (psycopg_pool retries a
    connection after 1, 2, 4, 8 s...: with it alone, the holder's next connection came
    13.5 to 16.5 s after the server went down, and the sweep took the job.)"""
    lease_s, outage_s = 12.5, 8.0
    url = server.new_database()
    holder = await _open(url)
    other: Store | None = None
    try:
        job_id = await holder.submit(JobSpec("f", {"a.item": [1]}))
        [job] = (await holder.claim("default", "A", limit=1, lease_s=lease_s)).jobs
        assert job.lease_expires_at is not None
        renewals: list[list[str]] = []

        async def heartbeat() -> None:
            while True:
                try:
                    renewals.append(await holder.renew("A", {job_id: job.token}, lease_s))
                    return
                except StoreError:
                    await asyncio.sleep(0.1)  # the worker's retry delay

        await asyncio.to_thread(server.stop)
        beating = asyncio.ensure_future(heartbeat())
        await asyncio.sleep(outage_s)  # how long the server is down (a time, not a state)
        await asyncio.to_thread(server.start)
        other = await _open(url)  # a worker that starts now: a fresh pool
        await asyncio.sleep(max(0.0, job.lease_expires_at + 0.1 - time.time()))  # the lease's end
        report = await other.sweep("B")
        assert report is not None and report.requeued == [] and report.failed == []
        await asyncio.wait_for(beating, 30)
        assert renewals == [[job_id]]
        now = await other.get(job_id)
        assert now is not None and (now.status, now.worker_id, now.runs) == ("running", "A", job.token)
    finally:
        await holder.close()
        if other is not None:
            await other.close()


async def test_a_store_call_during_an_outage_fails_instead_of_waiting_out_the_pool(server: PgServer) -> None:
    """While the server is down, calls fail (a ``StoreError`` their caller retries) rather
    than each waiting the pool's 10 s checkout timeout, and the store reconnects by itself
    once it is back."""
    store = await _open(server.new_database())
    try:
        job_id = await store.submit(JobSpec("f", {"a.item": [1]}))
        server.stop()
        try:
            for _ in range(3):
                with pytest.raises(StoreError):
                    await asyncio.wait_for(store.get(job_id), 5.0)
        finally:
            server.start()

        async def back() -> bool:  # retried as a worker does, for at most 5 s
            try:
                job = await asyncio.wait_for(store.get(job_id), 5.0)
            except StoreError:
                return False
            return job is not None and job.status == "queued"

        await poll_store(back, timeout_s=5.0, every_s=0.1)
    finally:
        await store.close()


def _calls(log: Path, routine: str, *, stopped: bool = False) -> list[tuple[float, float]]:
    """``(t0, t1)`` of each call of ``routine`` that ended (the ``times`` log lines), by
    start; with ``stopped``, the calls cancelled before their end too (the ``stops`` lines)."""
    out = []
    for line in log.read_text().split():
        if line.startswith("end:") or (stopped and line.startswith("stop:")):
            _, _job, name, _attempt, _pid, t0, t1 = line.split(":")
            if name == routine:
                out.append((float(t0), float(t1)))
    return sorted(out)


async def _finished_in_journal(store: Store, job_id: str) -> set[str]:
    records = await DurableJournal(store).records_of(job_id)
    return {r["routine"] for r in records if r["t"] == "done" and r["status"] == "completed"}


#: a line of the worker's log (structlog's console format, the libraries' warnings too)
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(debug|info|warning|error|critical) *\] ")


def _only_log_lines(worker: WorkerProcess) -> None:
    """Past its banner, the worker's output is log lines, one per message: psycopg's pool
    warnings during an outage included (not bare, several lines each)."""
    banner, *lines = worker.output().splitlines()
    assert banner.startswith("weirflow worker "), banner
    assert [line for line in lines if not LOG_LINE.match(line)] == []


async def _both_started(*workers: WorkerProcess) -> bool:
    """Whether each worker has opened the store (its log says so)."""
    return all("worker_started" in w.output() for w in workers)


@contextlib.contextmanager
def _workers_a_and_b(
    url: str, tmp_path: Path, *, lease_s: float
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Worker processes ``A`` and ``B`` on the store at ``url``, with a lease of ``lease_s``."""
    args = ("--lease", str(lease_s))
    with (
        WorkerProcess(url, tmp_path / "a.log", "--worker-id", "A", *args) as a,
        WorkerProcess(url, tmp_path / "b.log", "--worker-id", "B", *args) as b,
    ):
        yield a, b


async def _said(worker: WorkerProcess, text: str) -> bool:
    """Whether ``worker``'s log says ``text`` (another process's state)."""
    return text in worker.output()


async def _holder(
    store: Store, job_id: str, a: WorkerProcess, b: WorkerProcess
) -> tuple[JobRecord, WorkerProcess]:
    """Job ``job_id`` as its worker holds it, and that worker (``a`` is ``A``, ``b`` is ``B``)."""
    held = await store.get(job_id)
    assert held is not None and held.worker_id is not None
    return held, a if held.worker_id == "A" else b


async def _completed(store: Store, job_id: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status == "completed"


async def _back_until_completed(server: PgServer, store: Store, job_id: str) -> None:
    """The server starts again; wait until the job has completed."""
    await asyncio.to_thread(server.start)
    await store.open()
    await poll_store(lambda: _completed(store, job_id), timeout_s=60)


async def test_a_job_whose_outcome_write_races_a_short_outage_is_not_run_again(
    server: PgServer, tmp_path: Path
) -> None:
    """Two workers, a 12.5 s lease; the server goes down (for 8 s) while the job's one step
    runs (3 s), so the step ends and its outcome cannot be written. Once the server is back
    the holder renews its lease before it runs out and completes the job: the step ran
    once, in one attempt. (With psycopg_pool's reconnection alone the holder got no
    connection until after its lease, and the other worker ran the step again.)"""
    url = server.new_database()
    steps_log = tmp_path / "steps.log"
    item = {"sleep_s": 3.0, "log": str(steps_log), "times": True}
    store = await _open(url)
    try:
        job_id = await store.submit(JobSpec(flow="one", inputs={"a.item": [item]}, max_attempts=3))
        with _workers_a_and_b(url, tmp_path, lease_s=12.5) as (a, b):

            async def started() -> bool:  # the step's log: another process's state
                return steps_log.exists()

            await poll_store(lambda: _both_started(a, b), timeout_s=30)
            await poll_store(started, timeout_s=30)
            held, holder = await _holder(store, job_id, a, b)
            await store.close()
            back_at = time.time() + 8.0  # the server is down for 8 s
            await asyncio.to_thread(server.stop)
            await poll_store(lambda: _said(holder, "during=report"), timeout_s=30)  # (the step ended)
            await asyncio.sleep(max(0.0, back_at - time.time()))  # (a time, not a state)
            await _back_until_completed(server, store, job_id)
            assert a.terminate() == 0 and b.terminate() == 0
        assert "[psycopg.pool]" in holder.output()  # (its pool said it could not connect)
        _only_log_lines(a)
        _only_log_lines(b)
        job = await store.get(job_id)
        assert job is not None and job.outputs is not None and len(job.outputs["a.out"]) == 1
        assert (job.attempt, job.stalls, job.worker_id) == (1, 0, held.worker_id)
        assert [e.kind for e in await store.events(job_id=job_id)] == ["queued", "running", "completed"]
        assert len(_calls(steps_log, "a")) == 1
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("lease_s", "c_s"),
    [
        pytest.param(2.0, 6.0, id="c-still-running-when-the-lease-could-run-out"),
        pytest.param(6.0, 2.0, id="c-ended-during-the-outage"),
    ],
)
async def test_across_an_outage_longer_than_the_lease_finished_steps_never_run_again(
    server: PgServer, tmp_path: Path, lease_s: float, c_s: float
) -> None:
    """Two workers, a 3-step job; the server goes down once the journal holds ``a``'s and
    ``b``'s ends and ``c`` runs, and stays down past the lease. The job completes once,
    with its item once; ``a`` and ``b`` ran once; ``c`` ran once or, after a takeover,
    again, but never two calls at once, and only the last holder's outcome counts.

    With ``c`` longer than the lease, its worker stops ``c`` itself once its lease could
    have run out (it cannot tell whether its renewals reached the store), before the
    other worker may take the job over: a CI run, before that watch, saw the other worker
    take the job over while the first one's ``c`` still ran. With ``c`` ending during
    the outage, its worker keeps the finished job's outcome to write: that write is
    fenced, so it goes in unless the job was taken over first."""
    url = server.new_database()
    steps_log = tmp_path / "steps.log"
    item = {"sleeps": {"c": c_s}, "log": str(steps_log), "times": True, "stops": True}
    store = await _open(url)
    try:
        job_id = await store.submit(JobSpec(flow="steps3", inputs={"a.item": [item]}, max_attempts=3))
        with _workers_a_and_b(url, tmp_path, lease_s=lease_s) as (a, b):

            async def c_runs() -> bool:
                return await _finished_in_journal(store, job_id) == {"a", "b"}

            await poll_store(lambda: _both_started(a, b), timeout_s=30)
            await poll_store(c_runs, timeout_s=30)
            _, holder = await _holder(store, job_id, a, b)
            await store.close()
            await asyncio.to_thread(server.stop)
            stopped = time.time()
            if c_s > lease_s:
                said = f"no renewal of its {lease_s:g}s lease reached the store in time"
                await poll_store(lambda: _said(holder, said), timeout_s=30)
            else:
                await poll_store(lambda: _said(holder, "during=report"), timeout_s=30)
            # the server stays down until the lease, last renewed before the server
            # stopped, has run out (a wait for a time, not a state)
            await asyncio.sleep(max(0.0, stopped + lease_s + 0.5 - time.time()))
            await _back_until_completed(server, store, job_id)
            assert a.terminate() == 0 and b.terminate() == 0
        job = await store.get(job_id)
        assert job is not None and job.outputs is not None and len(job.outputs["c.out"]) == 1
        assert [e.kind for e in await store.events(job_id=job_id)].count("completed") == 1
        assert len(_calls(steps_log, "a")) == 1 and len(_calls(steps_log, "b")) == 1
        c = _calls(steps_log, "c", stopped=True)
        for (_, end), (start, _) in itertools.pairwise(c):
            assert end <= start, c  # never two calls at once
        ended = _calls(steps_log, "c")
        if c_s > lease_s:  # the first call was stopped, the one after the takeover ended
            assert (len(c), len(ended)) == (2, 1), c
        # run again only after a takeover: each re-run of ``c`` needs one
        assert len(c) - 1 <= job.stalls, (c, job.stalls)
        rows = {row.routine: (row.status, row.attempt) for row in await store.steps(job_id)}
        assert rows["a"] == ("completed", 1) and rows["b"] == ("completed", 1)
        # (a stopped call whose start never reached the journal is not an attempt of it)
        assert rows["c"][0] == "completed" and 1 <= rows["c"][1] <= len(c), (rows, c)
    finally:
        await store.close()
