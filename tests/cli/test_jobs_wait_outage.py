"""``weirflow jobs wait`` while its store stops answering: exit 2 with one line (the time
was up first, or the store is unreachable: docs/reference.md), soon after ``--timeout``,
never exit 1, which says the job failed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis

from weirflow.durable import JobSpec, open_store

from ..durable.pgserver import started_server as started_pg
from ..redisserver import RedisServer, started_server

TIMEOUT_S = 2.0
WAIT = [sys.executable, "-m", "weirflow", "jobs", "wait"]


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    server = started_server()
    yield server
    server.destroy()


def _subscribed(url: str) -> bool:
    """True once another client (the waiting command) has subscribed to a channel."""
    clients = redis.Redis.from_url(url).client_list()
    return any(int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0 for c in clients)


async def test_jobs_wait_on_a_store_that_stops_answering_is_exit_2_soon_after_its_timeout(
    own_server: RedisServer,
) -> None:
    url = own_server.url(1)
    job_id = await _queued_job(url)
    waiting = _waiting(job_id, url, _subscribed)
    try:
        began = time.monotonic()
        own_server.pause()  # SIGSTOP: takes connections, answers nothing
        try:
            _, err = waiting.communicate(timeout=60)
        finally:
            own_server.cont()
        took_s = time.monotonic() - began
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    lines = err.strip().splitlines()
    assert waiting.returncode == 2, err  # 1 would tell a script that the job failed
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    # bounded by its --timeout plus a margin, not by two more store deadlines (5 s each)
    assert took_s < TIMEOUT_S + 6.0, (took_s, err)


def test_jobs_wait_on_a_store_that_does_not_answer_when_it_opens_is_exit_2_soon_after_its_timeout() -> None:
    """PostgreSQL SIGSTOPped before the command starts: opening the store counts against
    ``--timeout`` too (it took the store's 10 s connect timeout, 12 s in all, for a 2 s one)."""
    server = started_pg()
    try:
        url = server.new_database()  # (the migrations done: the store opens at once normally)
        with server.stopped(backends=False):  # new connections are taken and never answered
            began = time.monotonic()
            done = subprocess.run(
                [*WAIT, "0" * 32, "--timeout", str(TIMEOUT_S), "--store", url],
                capture_output=True,
                text=True,
                timeout=60,
            )
            took_s = time.monotonic() - began
    finally:
        server.destroy()
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"did not open within --timeout {TIMEOUT_S:g}s" in line, line
    assert took_s < TIMEOUT_S + 6.0, (took_s, line)  # (python's start included; the store's 10 s before)


def _listening(url: str) -> bool:
    """True once another client (the waiting command) has run LISTEN on the database."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'").fetchone()
    return rows is not None and rows[0] > 0


def test_jobs_wait_on_a_postgresql_store_stopped_while_it_waits_ends_soon_after_its_timeout() -> None:
    """PostgreSQL (its postmaster and every backend) SIGSTOPped while the command waits:
    psycopg takes 11 s to give up on the cancelled wait and 5 s more to close its pool
    (22 s for a 4 s --timeout); the command ends about a second past --timeout anyway."""
    server = started_pg()
    try:
        url = server.new_database()
        job_id = asyncio.run(_queued_job(url))
        waiting = _waiting(job_id, url, _listening)
        try:
            began = time.monotonic()
            with server.stopped():
                _, err = waiting.communicate(timeout=60)
            took_s = time.monotonic() - began
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
    finally:
        server.destroy()
    assert waiting.returncode == 2, err
    [line] = err.strip().splitlines()
    assert line == f"error: job {job_id}: the store did not answer within --timeout {TIMEOUT_S:g}s", line
    assert took_s < TIMEOUT_S + 4.0, (took_s, line)


def _waiting(job_id: str, url: str, ready: Callable[[str], bool]) -> subprocess.Popen[str]:
    """``jobs wait job_id --timeout TIMEOUT_S`` on the store at ``url``, once ``ready(url)``
    says it waits (on its subscription or LISTEN)."""
    waiting = subprocess.Popen(
        [*WAIT, job_id, "--timeout", str(TIMEOUT_S), "--store", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while not ready(url):  # (another process: nothing here to wait on)
            assert waiting.poll() is None, waiting.communicate()
            assert time.monotonic() < deadline, f"jobs wait never got to {ready.__name__}"
            time.sleep(0.05)
    except BaseException:
        waiting.kill()
        waiting.wait()
        raise
    return waiting


async def _queued_job(url: str) -> str:
    store = open_store(url)
    await store.open()
    try:  # a job of a queue nobody serves: it stays queued
        return await store.submit(JobSpec("f", {}, queue="nobody"))
    finally:
        await store.close()
