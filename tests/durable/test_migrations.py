"""Schema migrations on SQLite and PostgreSQL: a database made by an older weirflow (only the
migrations before 0005) is brought up to date when a store opens it, keeping its jobs."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import psycopg

from weirflow.durable import JobSpec, Retention, open_store
from weirflow.durable.migrations import VERSION_TABLE, migrations, pending, sqlite_statements
from weirflow.durable.schedules import Schedule

from .pgserver import PgServer

OLD = 5  # the databases below hold every migration numbered before this one


def test_pending_is_what_the_database_does_not_record() -> None:
    every = [m.version for m in migrations("postgres")]
    assert [m.version for m in pending("postgres", set())] == every
    # a number below one already applied (another branch's migration landing later) still applies
    assert [m.version for m in pending("postgres", {v for v in every if v != 3})] == [3]
    assert pending("sqlite", {m.version for m in migrations("sqlite")}) == []


async def check_upgraded(url: str) -> None:
    store = open_store(url)
    await store.open()
    try:
        [old] = await store.list_jobs()
        assert (old.flow, old.inputs, old.status) == ("f", {"a.x": [1]}, "queued")
        assert (old.dead_letters, old.error_detail) == (None, None)
        await store.add_schedule(Schedule(name="s", flow="f", inputs={}, every_s=60))
        assert [s.name for s in await store.list_schedules()] == ["s"]
        await store.submit(JobSpec(flow="f", inputs={}))
        assert len(await store.list_jobs()) == 2
    finally:
        await store.close()
    again = open_store(url)  # opening once more applies nothing and fails nothing
    await again.open()
    await again.close()


async def test_an_older_sqlite_database_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"CREATE TABLE {VERSION_TABLE} (version INTEGER PRIMARY KEY, applied_at REAL)")
    for mg in migrations("sqlite"):
        if mg.version < OLD:
            for statement in sqlite_statements(mg.sql):
                conn.execute(statement)
            conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (?, ?)", (mg.version, time.time()))
    conn.execute(
        "INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, run_at, created_at)"
        """ VALUES ('old', 'f', '{"a.x": [1]}', 'default', 'queued', 3, ?, 0, 0)""",
        ('{"initial_s": 1, "factor": 2, "max_s": 60, "jitter": false}',),
    )
    conn.close()
    await check_upgraded(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    versions = [r[0] for r in conn.execute(f"SELECT version FROM {VERSION_TABLE} ORDER BY version")]
    conn.close()
    assert versions == [m.version for m in migrations("sqlite")]


async def test_an_older_postgres_database_is_upgraded(pg: PgServer) -> None:
    backend = "postgres"
    url = pg.new_database()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            f"CREATE TABLE {VERSION_TABLE} (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
        )
        for mg in migrations(backend):
            if mg.version < OLD:
                await conn.execute(mg.sql.encode())
                await conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (%s, %s)", (mg.version, time.time()))
        await conn.execute(
            "INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, run_at, created_at)"
            """ VALUES ('old', 'f', '{"a.x": [1]}', 'default', 'queued', 3, %s, 0, 0)""",
            ('{"initial_s": 1, "factor": 2, "max_s": 60, "jitter": false}',),
        )
    await check_upgraded(url)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(f"SELECT version FROM {VERSION_TABLE} ORDER BY version")
        assert [r[0] for r in await cur.fetchall()] == [m.version for m in migrations(backend)]


async def test_a_postgres_database_from_before_0014_still_purges_a_job_with_its_rows(pg: PgServer) -> None:
    # made with the foreign keys (ON DELETE CASCADE) that 0014 replaces with a trigger
    url = pg.new_database()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            f"CREATE TABLE {VERSION_TABLE} (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
        )
        for mg in migrations("postgres"):
            if mg.version < 14:
                await conn.execute(mg.sql.encode())
                await conn.execute(f"INSERT INTO {VERSION_TABLE} VALUES (%s, %s)", (mg.version, time.time()))
        await conn.execute(
            "INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, run_at, created_at,"
            " finished_at) VALUES ('old', 'f', '{}', 'default', 'completed', 1, '{}', 0, 0, 0)"
        )
        await conn.execute(
            "INSERT INTO wf_steps (job_id, run, routine, seq, status, attempt)"
            " VALUES ('old', 1, 'a', 1, 'completed', 1)"
        )
        await conn.execute("INSERT INTO wf_journal (job_id, record) VALUES ('old', '{}')")
        await conn.execute(
            "INSERT INTO wf_events (job_id, queue, kind, at) VALUES ('old', 'default', 'completed', 0)"
        )
    store = open_store(url)
    await store.open()
    try:
        kept = await store.submit(JobSpec(flow="f", inputs={}))
        assert len(await store.steps("old")) == 1 and await store.read_journal("old") == ["{}"]
        report = await store.sweep("s", retention=Retention(keep_completed_s=1))
        assert report is not None and report.deleted == 1
        assert await store.steps("old") == [] and await store.read_journal("old") == []
        assert await store.events(job_id="old") == []
        assert [e.kind for e in await store.events(job_id=kept)] == ["queued"]
    finally:
        await store.close()
