"""The SQLite store's journal appends: inline while the write lock is free, through the
store thread when it is not, and a WAL that is checkpointed as the journal grows."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, open_store
from weirflow.durable.sqlite import SqliteStore
from weirflow.errors import StoreRefusedError

from .helpers import poll_store


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = open_store(f"sqlite:///{tmp_path / 'weirflow.db'}")
    assert isinstance(store, SqliteStore)
    await store.open()
    yield store
    await store.close()


async def test_a_held_write_lock_sends_the_batch_through_the_store_thread(
    sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    job_id = await sqlite_store.submit(JobSpec(flow="f", inputs={}))
    await sqlite_store.append_journal([(job_id, "first")])
    other = sqlite3.connect(tmp_path / "weirflow.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        append = asyncio.ensure_future(sqlite_store.append_journal([(job_id, "second"), (job_id, "third")]))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not append.done()  # waiting for the lock on the store thread, not failed
    finally:
        other.execute("COMMIT")
        other.close()
    await append
    await sqlite_store.append_journal([(job_id, "fourth")])
    assert await sqlite_store.read_journal(job_id) == ["first", "second", "third", "fourth"]


async def test_an_append_the_database_refuses_is_a_store_error(sqlite_store: SqliteStore) -> None:
    with pytest.raises(StoreRefusedError, match="no-such-job"):  # (the rows' foreign key)
        await sqlite_store.append_journal([("no-such-job", "record")])
    job_id = await sqlite_store.submit(JobSpec(flow="f", inputs={}))
    await sqlite_store.append_journal([(job_id, "after")])  # the connection is still usable
    assert await sqlite_store.read_journal(job_id) == ["after"]


async def test_the_wal_is_checkpointed_as_the_journal_grows(
    sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    job_id = await sqlite_store.submit(JobSpec(flow="f", inputs={}))
    record = "x" * (1 << 20)
    for _ in range(24):  # 24 MiB of journal
        await sqlite_store.append_journal([(job_id, record)])
        await sqlite_store.get(job_id)  # the store thread is in order: a checkpoint due has run
    wal = tmp_path / "weirflow.db-wal"
    assert wal.stat().st_size < 12 << 20  # without checkpoints it would hold all 24 MiB
    assert len(await sqlite_store.read_journal(job_id)) == 24


class Forward(wf.Routine):
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def forward(self, item: int, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


async def test_a_store_call_completes_while_a_busy_job_runs(sqlite_store: SqliteStore) -> None:
    """The store's thread gets the GIL from a loop that never idles (a worker's lease
    heartbeat is such a call): it completes while the job still runs, not after."""
    job_id = await sqlite_store.submit(JobSpec(flow="f", inputs={}))
    flow = wf.Flow("busy")
    for name in ("a", "b", "c"):
        flow.add(name, Forward())
    flow.connect("a.out", "b.inp")
    flow.connect("b.out", "c.inp")
    # CPython forces a switch to a waiting thread after this long without one; the loop's
    # polls count as switches, so here it never comes, and only the hand-off lets it in
    interval = sys.getswitchinterval()
    sys.setswitchinterval(10)
    try:
        async with wf.Engine() as engine:
            job = await engine.start(flow, {"a.inp": list(range(300_000))})  # a second or more
            for _ in range(3):
                assert await sqlite_store.get(job_id) is not None
                assert not job.finished
            await job.cancel()
    finally:
        sys.setswitchinterval(interval)


async def test_a_reader_elsewhere_does_not_hold_up_the_store(tmp_path: Path) -> None:
    """A WAL checkpoint is due, and another process holds a read open: the checkpoint
    waits for it only briefly, so the store's other calls (a worker's heartbeat, say) are
    not held up for the busy timeout."""
    path = tmp_path / "weirflow.db"
    store = SqliteStore(path, busy_timeout_s=30)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="f", inputs={}))
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM wf_jobs").fetchall()  # a read in progress
        try:
            await store.append_journal([(job_id, "x" * (5 << 20))])  # a checkpoint is due
            async with asyncio.timeout(10):  # a third of the busy timeout
                await store.get(job_id)
                await store.get(job_id)  # (queued after the checkpoint)
                await store.append_journal([(job_id, "after")])
        finally:
            reader.execute("COMMIT")
            reader.close()
        assert (await store.read_journal(job_id))[-1] == "after"
    finally:
        await store.close()


async def test_the_wal_shrinks_back_once_a_long_reader_is_gone(tmp_path: Path) -> None:
    """A reader elsewhere keeps the WAL from being emptied while journal appends go on:
    once it is gone, the store checkpoints again (with no append to trigger it) and the
    WAL goes back down instead of staying at its largest for good."""
    path = tmp_path / "weirflow.db"
    wal = tmp_path / "weirflow.db-wal"
    store = SqliteStore(path)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="f", inputs={}))
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM wf_jobs").fetchall()  # a long read in progress
        for _ in range(6):
            await store.append_journal([(job_id, "x" * (3 << 20))])
        grown = wal.stat().st_size
        assert grown > 16 << 20
        reader.execute("COMMIT")
        reader.close()

        async def shrunk() -> bool:  # the file's size: nothing to wait on but the file
            return wal.stat().st_size < 1 << 20

        await poll_store(shrunk, timeout_s=10)
        assert len(await store.read_journal(job_id)) == 6
    finally:
        await store.close()
