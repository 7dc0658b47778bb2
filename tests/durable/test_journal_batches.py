"""A journal batch is written once, also when it is sent again (its reply was lost).

A worker's journal numbers each job's batches within its claim (``DurableJournal``):
``append_journal(rows, tokens=..., batches=...)``. A store that already holds a job's
batch under that token skips it, atomically with the fencing check, and does not count
the job as refused: the journal then sends a batch again when its append failed, without
the store committing its records twice (a replay would deliver them twice)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, cast

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.durable.journal import DurableJournal
from weirflow.durable.redis_store import RedisStore
from weirflow.errors import StoreError
from weirflow.runtime import restore_from

from ..redisserver import RedisServer
from .conftest import FakeClock
from .test_redis_lost_reply import ReplyDropper, dropper  # noqa: F401 - (its fixture)


async def test_a_batch_sent_again_is_written_once(store: Store, clock: FakeClock) -> None:
    a = await store.submit(JobSpec("f", {}))
    b = await store.submit(JobSpec("f", {}))
    tokens = {j.id: j.token for j in (await store.claim("default", "w1", limit=2, lease_s=30)).jobs}
    assert await store.append_journal([(a, "a1"), (b, "b1")], tokens=tokens, batches={a: 1, b: 1}) == []
    # a's batch 1 again (its reply was lost), with b's next one: a is skipped, not refused
    resend = [(a, "a1"), (b, "b2")]
    assert await store.append_journal(resend, tokens=tokens, batches={a: 1, b: 2}, resent=True) == []
    mine = {a: tokens[a]}
    assert await store.append_journal([(a, "a2")], tokens=mine, batches={a: 2}) == []
    assert await store.append_journal([(a, "a2")], tokens=mine, batches={a: 2}, resent=True) == []
    big = "x" * 100_000  # (the PostgreSQL store writes big batches another way)
    assert await store.append_journal([(a, big)], tokens=mine, batches={a: 3}) == []
    assert await store.append_journal([(a, big)], tokens=mine, batches={a: 3}, resent=True) == []
    assert await store.read_journal(a) == ["a1", "a2", big]
    assert await store.read_journal(b) == ["b1", "b2"]
    # the next claim numbers its batches from 1 again: they are new
    clock.advance(31)
    [again] = [j for j in (await store.claim("default", "w2", limit=2, lease_s=30)).jobs if j.id == a]
    assert await store.append_journal([(a, "a1 of w2")], tokens={a: again.token}, batches={a: 1}) == []
    assert await store.read_journal(a) == ["a1", "a2", big, "a1 of w2"]
    # and a stale worker's batch is refused as before, whatever its number
    refused = await store.append_journal([(a, "late")], tokens={a: tokens[a]}, batches={a: 4}, resent=True)
    assert refused == [a]
    assert await store.read_journal(a) == ["a1", "a2", big, "a1 of w2"]


@wf.routine
def double(x: int) -> int:
    return x * 2


chain = wf.Flow("chain")
chain.add("a", double)
chain.add("b", double)
chain.connect("a.output", "b.input")
chain.output("b.output")


async def test_a_journal_batch_whose_reply_is_lost_is_replayed_once(
    dropper: ReplyDropper,  # noqa: F811 - (the fixture)
    redis_server: RedisServer,
) -> None:
    db = redis_server.new_database().rsplit("/", 1)[1]
    store = RedisStore(f"redis://127.0.0.1:{dropper.port}/{db}", prefix=f"t{uuid.uuid4().hex[:8]}")
    await store.open()
    try:
        warm = await store.submit(JobSpec(flow="chain", inputs={}))
        job_id = await store.submit(JobSpec(flow="chain", inputs={"a.input": [1, 2, 3]}))
        tokens = {j.id: j.token for j in (await store.claim("default", "w1", limit=2, lease_s=30)).jobs}
        await store.append_journal([(warm, "warm")], tokens={warm: tokens[warm]})  # (the script is loaded)
        journal = DurableJournal(store, fenced=True, drop_completed=False)
        journal.begin(job_id, tokens[job_id])
        dropper.armed = True  # the reply to the first batch's append is lost
        async with wf.Engine(journal=journal) as engine:
            job = await engine.start(chain, {"a.input": [1, 2, 3]}, job_id=job_id)
            result = await job.wait(timeout_s=10)
            with contextlib.suppress(StoreError):  # (if this flush is the one whose reply is lost)
                await journal.flush()
            await journal.close()  # sends the batch again, and what came after it
        assert dropper.dropped.is_set()
        assert result.outputs == {"b.output": [4, 8, 12]}
        # a takeover now replays the journal (without its end, as after a crash before the
        # outcome was written): the outputs hold each item once
        records: list[Any] = [r for r in await journal.records_of(job_id) if r["t"] != "end"]
        async with wf.Engine() as engine:
            job = await engine.start(chain, {"a.input": [1, 2, 3]}, restore=restore_from(records, chain))
            replayed = await job.wait(timeout_s=10)
        assert sorted(replayed.outputs["b.output"]) == [4, 8, 12]
    finally:
        await store.close()


class _Faults:
    """The store, with faults injected on its journal appends (one per call, in order:
    an exception type to raise instead of appending, or ``None`` to append)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.faults: list[type[Exception] | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def append_journal(self, rows: Any, **kw: Any) -> list[str]:
        if self.faults and (fault := self.faults.pop(0)) is not None:
            raise fault("injected")
        return await self.store.append_journal(rows, **kw)


async def test_a_batch_refused_then_cut_short_job_by_job_is_written_once(store: Store) -> None:
    """The store refuses a batch for what it holds, so the journal sends it job by job;
    the server goes away after the first job's append. The next flush sends the batch
    again as a resent one: the job already written is skipped, not written twice."""
    a = await store.submit(JobSpec("chain", {}))
    b = await store.submit(JobSpec("chain", {}))
    tokens = {j.id: j.token for j in (await store.claim("default", "w1", limit=2, lease_s=30)).jobs}
    faulty = _Faults(store)
    # (no flush of its own before the one below: one batch holds both jobs' records)
    journal = DurableJournal(
        cast(Store, faulty), fenced=True, drop_completed=False, max_batch=10_000, max_delay_s=60
    )
    async with wf.Engine(journal=journal) as engine:
        for job_id, x in ((a, 1), (b, 2)):
            journal.begin(job_id, tokens[job_id])
            job = await engine.start(chain, {"a.input": [x]}, job_id=job_id)
            assert (await job.wait(timeout_s=10)).outputs == {"b.output": [4 * x]}
        # the batch refused; a written alone; b's append meets an outage
        faulty.faults = [wf.StoreRefusedError, None, StoreError]
        with contextlib.suppress(StoreError):
            await journal.flush()
        await journal.flush()  # the store is back
        await journal.close()
    for job_id, x in ((a, 1), (b, 2)):
        records = [r for r in await journal.records_of(job_id) if r["t"] != "end"]
        async with wf.Engine() as engine:
            job = await engine.start(chain, {"a.input": [x]}, restore=restore_from(records, chain))
            replayed = await job.wait(timeout_s=10)
        assert replayed.outputs == {"b.output": [4 * x]}, (job_id, records)
