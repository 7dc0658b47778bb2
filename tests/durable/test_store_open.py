"""A store that cannot be opened fails at once, in one line, without the password; only a
store that was open and went away is retried."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import structlog

import weirflow as wf
from weirflow.durable import JobSpec, open_store
from weirflow.durable.alerts import AlertRules, Alerts
from weirflow.durable.worker import Worker

from .conftest import FakeClock
from .helpers import job_is, poll_store
from .pgserver import PgServer
from .procs import FLOWS_MODULE, ROOT, cli

PASSWORD = "s3cr3tpw"  # the secret no output may show
ROLE = "wf_pw_user"


@pytest.fixture(scope="module")
def password_role(pg: PgServer) -> Iterator[str]:
    """A role that logs in with PASSWORD (scram), on the session server whose other roles are
    trusted: only this role's line is added to pg_hba.conf."""
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    hba = pg.data / "pg_hba.conf"
    before = hba.read_text()
    hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n{before}")
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {ROLE} OWNER {ROLE}")
        conn.execute("SELECT pg_reload_conf()")
    yield ROLE
    hba.write_text(before)
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")


def bad_urls(pg: PgServer) -> dict[str, str]:
    at = f"127.0.0.1:{pg.port}"
    return {
        "unknown host": f"postgresql://wf:{PASSWORD}@nonexistent.invalid/db",
        "missing database": f"postgresql://postgres:{PASSWORD}@{at}/no_such_db",
        "missing role": f"postgresql://no_such_role:{PASSWORD}@{at}/postgres",
        "bad password": f"postgresql://{ROLE}:wrong{PASSWORD}@{at}/postgres",
    }


REASONS = {
    "unknown host": "nonexistent.invalid",
    "missing database": 'database "no_such_db" does not exist',
    "missing role": 'role "no_such_role" does not exist',
    "bad password": "password authentication failed",
}


@pytest.mark.parametrize("kind", list(REASONS))
async def test_a_postgres_store_that_cannot_be_opened_fails_at_once(
    pg: PgServer, password_role: str, kind: str
) -> None:
    store = open_store(bad_urls(pg)[kind])
    # the pool used to retry until its 10 s timeout; now the first refusal is the answer
    async with asyncio.timeout(5):
        with pytest.raises(wf.StoreOpenError) as caught:
            await store.open()
    message = str(caught.value)
    assert REASONS[kind] in message
    assert "\n" not in message and PASSWORD not in message


async def test_the_right_password_opens_the_store(pg: PgServer, password_role: str) -> None:
    store = open_store(f"postgresql://{password_role}:{PASSWORD}@127.0.0.1:{pg.port}/{password_role}")
    await store.open()
    try:
        assert await store.list_jobs() == []
    finally:
        await store.close()


COMMANDS = {
    "worker": ["worker", "--flows", FLOWS_MODULE],
    "jobs list": ["jobs", "list"],
    "jobs submit": ["jobs", "submit", "one", "-i", "a.item=1"],
    "schedules list": ["schedules", "list"],
    "serve": ["serve", "--flows", FLOWS_MODULE, "--port", "0"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_fails_in_one_line_without_the_password(
    pg: PgServer, password_role: str, command: str
) -> None:
    for kind in ("bad password", "missing database"):
        done = cli(*COMMANDS[command], "--store", bad_urls(pg)[kind], timeout_s=30)
        assert done.returncode == 2, (kind, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot open PostgreSQL store"), done.stderr
        assert REASONS[kind] in lines[0]
        assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "url",
    [f"postgresql://wf:{PASSWORD}@/db", f"postgres://wf:{PASSWORD}@", f"mysql://wf:{PASSWORD}@h/db"],
)
def test_a_malformed_store_url_is_refused_without_its_password(url: str) -> None:
    done = cli("jobs", "list", "--store", url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: store URL") and len(done.stderr.strip().splitlines()) == 1
    assert PASSWORD not in done.stderr and "wf:***@" in done.stderr


async def test_a_worker_that_cannot_open_its_store_raises_instead_of_retrying(pg: PgServer) -> None:
    worker = Worker(f"postgresql://postgres@127.0.0.1:{pg.port}/no_such_db", [])
    async with asyncio.timeout(5):
        with pytest.raises(wf.StoreOpenError, match="no_such_db"):
            await worker.run()


async def test_the_worker_logs_to_stderr_without_the_password(tmp_path: Path, pg: PgServer) -> None:
    """``worker_started store=...`` names the store with its password masked; every log line
    is on stderr, nothing on stdout."""
    url = pg.new_database().replace("postgres@", f"postgres:{PASSWORD}@")  # (trusted: any password)
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="noop", inputs={"n.input": [1]}))
        out, err = tmp_path / "out", tmp_path / "err"
        with out.open("w") as o, err.open("w") as e:
            proc = subprocess.Popen(
                [sys.executable, "-m", "weirflow", "worker", "--flows", FLOWS_MODULE, "--store", url],
                cwd=ROOT,
                stdout=o,
                stderr=e,
            )
            try:
                await poll_store(lambda: _completed(store, job_id), timeout_s=30)
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0
    finally:
        await store.close()
    logged = err.read_text()
    assert out.read_text() == ""
    assert "worker_started" in logged and "worker_stopped" in logged
    assert "postgres:***@127.0.0.1" in logged and PASSWORD not in logged


async def _completed(store: wf.durable.Store, job_id: str) -> bool:
    return await job_is(store, job_id, "completed") is not None


async def test_a_failing_alert_webhook_is_logged_without_its_secrets(clock: FakeClock) -> None:
    """A webhook URL holds secrets (a password, Slack's token in the path): the log of a
    failed POST names only its host."""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: the POST fails
    url = f"http://hook:{PASSWORD}@127.0.0.1:{port}/services/T0K3NPATH"
    store = open_store("memory://", clock=clock)
    await store.open()
    await store.submit(JobSpec(flow="noop", inputs={"n.input": [1]}))
    await store.claim("default", "w1", limit=1, lease_s=600)
    clock.advance(10)
    with structlog.testing.capture_logs() as logged:
        sent = await Alerts(AlertRules(long_running_s=1, webhook_url=url), store).check("default")
    assert [a["kind"] for a in sent] == ["alert.long_running"]
    [failed] = [e for e in logged if e["event"] == "alert_webhook_failed"]
    assert failed["webhook"] == f"http://127.0.0.1:{port}/…"
    shown = repr(logged)
    assert PASSWORD not in shown and "T0K3NPATH" not in shown


@pytest.mark.parametrize(
    ("command", "code"),
    [(["jobs", "submit", "one", "-i", "a.item=1"], 2), (["worker", "--flows", FLOWS_MODULE], 2)],
)
def test_a_sqlite_store_that_cannot_be_made_is_one_line(
    tmp_path: Path, command: list[str], code: int
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = cli(*command, "--store", f"sqlite:///{blocker}/sub/x.db")
    assert done.returncode == code, done.stderr  # (a store that cannot be opened at all: 2)
    [line] = done.stderr.strip().splitlines()  # not "creating the store" first
    assert line.startswith("error: ") and "Not a directory" in line


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/x", "rediss://:pw@h:1/db0", "redis://h/0x"])
def test_a_redis_database_that_is_not_a_number_is_refused_not_db_0(url: str) -> None:
    """redis-py drops a path it cannot read and uses database 0: the store refuses it instead."""
    with pytest.raises(wf.StoreError, match="is not a number") as refused:
        open_store(url)
    assert "pw" not in str(refused.value)
    for good in ("redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379", "redis://127.0.0.1:6379/"):
        assert open_store(good) is not None


def test_a_registry_url_whose_database_is_not_a_number_is_refused() -> None:
    from weirflow.cluster import Registry

    with pytest.raises(wf.ClusterError, match="registry URL 'redis://h:1/x': the database 'x'"):
        Registry("redis://h:1/x")
