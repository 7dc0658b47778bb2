"""The durable journal on every backend: batches committed in order, replay, JSON-only items."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import pytest

import weirflow as wf
from tests.runtime.flows import Double
from weirflow.durable import JobSpec, Store
from weirflow.durable.journal import LAG_BATCHES, DurableJournal
from weirflow.runtime import LogJournal, restore_from


def flow() -> wf.Flow:
    f = wf.Flow("double")
    f.add("d", Double())
    f.output("d.out")
    return f


async def test_the_store_holds_what_a_log_journal_would(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="double", inputs={"d.inp": [1, 2, 3]}))
    durable = DurableJournal(store, max_batch=4)  # several batches
    log = LogJournal()
    async with wf.Engine(journal=wf.Journals(durable, log)) as engine:
        job = await engine.start(flow(), {"d.inp": [1, 2, 3]}, job_id=job_id, keep_open=True)
        await job.send("d.inp", 4)
        await job.pause()
        made = len(log.records)
        await durable.flush()  # commits at least what was made before it was called
        stored = await durable.records_of(job_id)
        assert len(stored) >= made
        assert stored == json.loads(json.dumps(log.records[: len(stored)]))
        restored = restore_from(stored, flow())
        done = [r for r in stored if r["t"] == "done"]
        assert restored.states == ({"d": done[-1]["state"]} if done else {})
        assert restored.outputs.get("d.out", []) == [r["emitted"][0][1] for r in done]
        await job.resume()
        await job.close_input()
        result = await job.wait(timeout_s=10)
    assert sorted(result.outputs["d.out"]) == [2, 4, 6, 8]  # the send may overtake the feed


async def test_a_completed_job_drops_what_it_had_not_committed(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="double", inputs={"d.inp": [1]}))
    durable = DurableJournal(store, max_delay_s=60)  # nothing is flushed by time
    async with wf.Engine(journal=durable) as engine:
        job = await engine.start(flow(), {"d.inp": [1]}, job_id=job_id)
        await job.wait(timeout_s=10)
    await durable.flush()
    assert await durable.records_of(job_id) == []


async def test_a_failed_job_commits_everything_for_its_retry(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="double", inputs={"d.inp": ["x"]}))
    durable = DurableJournal(store, max_delay_s=60)

    class Fails(Double):
        @Double.inp.handler
        async def double(self, n: Any, ctx: wf.Context) -> None:
            raise RuntimeError("no")

    f = wf.Flow("fails")
    f.add("d", Fails())
    async with wf.Engine(journal=durable) as engine:
        job = await engine.start(f, {"d.inp": ["x"]}, job_id=job_id)
        result = await job.wait(timeout_s=10)
    await durable.flush()
    assert result.status is wf.JobStatus.FAILED
    records = await durable.records_of(job_id)
    assert [r["t"] for r in records][:3] == ["enq", "start", "end"]
    assert restore_from(records, f).rerun_attempts == {"d.inp": [2]}


async def test_items_that_are_not_json_are_refused_at_emit(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="double", inputs={"d.inp": [1]}))

    class Bad(wf.Routine):
        inp = wf.Slot()
        out = wf.Event()

        @inp.handler
        async def bad(self, n: int, ctx: wf.Context) -> None:
            await ctx.emit(self.out, {1, 2})  # a set is not JSON

    bad = wf.Flow("bad")
    bad.add("b", Bad())
    bad.output("b.out")
    durable = DurableJournal(store)
    async with wf.Engine(journal=durable) as engine:
        job = await engine.start(bad, job_id=job_id, keep_open=True)
        with pytest.raises(wf.StoreError, match="item: a value of type object is not JSON"):
            await job.send("b.inp", object())
        assert job.queues()["b.inp"].enqueued == 0
        await job.send("b.inp", 1)
        result = await job.wait(timeout_s=10)
    assert result.status is wf.JobStatus.FAILED
    assert result.error is not None
    assert "item: a value of type set is not JSON" in result.error
    assert result.outputs["b.out"] == []  # refused before it was enqueued or collected


async def test_state_that_is_not_json_fails_the_job_clearly(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="double", inputs={"d.inp": [1]}))

    class Stateful(wf.Routine):
        inp = wf.Slot()

        @inp.handler
        async def keep(self, n: int, ctx: wf.Context) -> None:
            ctx.state["conn"] = object()

    f = wf.Flow("stateful")
    f.add("s", Stateful())
    async with wf.Engine(journal=DurableJournal(store)) as engine:
        job = await engine.start(f, {"s.inp": [1]}, job_id=job_id)
        result = await job.wait(timeout_s=10)
    assert result.status is wf.JobStatus.FAILED
    assert result.error == (
        "routine 's': the durable journal cannot record its "
        'state["conn"]: a value of type object is not JSON (use dict, list, str, int, float, bool or None)'
    )


async def test_an_unopenable_sqlite_path_is_a_store_error(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    from weirflow.durable import open_store

    store = open_store(f"sqlite:///{blocker / 'sub' / 'x.db'}")
    with pytest.raises(wf.StoreError, match="cannot open SQLite store"):
        await store.open()


class HeldStore:
    """A journal store whose appends wait until ``release`` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.release = asyncio.Event()
        self.batches: list[int] = []  # records per append

    async def append_journal(
        self,
        rows: Sequence[tuple[str, str]],
        *,
        tokens: Mapping[str, int] | None = None,
        batches: Mapping[str, int] | None = None,
        resent: bool = False,
    ) -> list[str]:
        await self.release.wait()
        self.batches.append(sum(text.count("\n") + 1 for _, text in rows))
        return await self.store.append_journal(rows, tokens=tokens, batches=batches, resent=resent)

    async def read_journal(self, job_id: str) -> list[str]:
        return await self.store.read_journal(job_id)

    async def clear_journal(self, job_id: str, *, token: int | None = None) -> None:
        await self.store.clear_journal(job_id, token=token)


class Watched(DurableJournal):
    """Notes how much was buffered when a routine first had to wait, then lets the store go."""

    buffered_at_wait: int | None = None

    def lagging(self) -> Awaitable[None] | None:
        lag = super().lagging()
        if lag is not None and self.buffered_at_wait is None:
            self.buffered_at_wait = self.buffered
            assert isinstance(self.store, HeldStore)
            self.store.release.set()
        return lag


@pytest.mark.parametrize("store_url", ["memory"], indirect=True)
async def test_a_job_waits_for_a_journal_that_falls_behind(store: Store) -> None:
    items = list(range(3000))
    job_id = await store.submit(JobSpec(flow="double", inputs={}))
    held = HeldStore(store)
    journal = Watched(held, max_batch=100, drop_completed=False)
    f = wf.Flow("double")
    f.add("d", Double())
    f.add("e", Double())
    f.connect("d.out", "e.inp")
    f.slot("d.inp", capacity=50)
    f.slot("e.inp", capacity=50)
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(f, {"d.inp": items}, job_id=job_id)
        result = await job.wait(timeout_s=30)
        held.release.set()  # (if the job never waited, the store is let go only now)
        await journal.flush()
    assert result.status is wf.JobStatus.COMPLETED
    # the routines stopped a batch or so ahead of the store, not thousands of records
    assert journal.buffered_at_wait is not None
    # LAG_BATCHES full batches, and what two routines and the feed add meanwhile
    assert journal.buffered_at_wait < LAG_BATCHES * 100 + 200
    assert max(held.batches) < LAG_BATCHES * 100 + 200
    records = await journal.records_of(job_id)
    assert sum(1 for r in records if r["t"] == "done") == 2 * len(items)


class Gated(wf.Routine):
    """Each item's call waits until its gate is opened."""

    inp = wf.Slot()
    gates: dict[int, asyncio.Event]

    @inp.handler
    async def wait(self, n: int, ctx: wf.Context) -> None:
        await self.gates[n].wait()


class Entered(HeldStore):
    """A HeldStore that says when its first append has begun."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.entered = asyncio.Event()

    async def append_journal(
        self,
        rows: Sequence[tuple[str, str]],
        *,
        tokens: Mapping[str, int] | None = None,
        batches: Mapping[str, int] | None = None,
        resent: bool = False,
    ) -> list[str]:
        self.entered.set()
        return await super().append_journal(rows, tokens=tokens, batches=batches, resent=resent)


@pytest.mark.parametrize("store_url", ["memory"], indirect=True)
async def test_a_step_that_starts_during_a_flush_has_its_start_committed(store: Store) -> None:
    """A step still running when a flush comes round is in the committed journal, so a
    crash reruns it as its next attempt, also when it started while the previous batch
    was being committed and nothing else is recorded after it."""
    job_id = await store.submit(JobSpec(flow="gated", inputs={}))
    held = Entered(store)
    journal = DurableJournal(held)
    gates = {1: asyncio.Event(), 2: asyncio.Event()}
    gates[1].set()
    f = wf.Flow("gated")
    f.add("g", Gated(gates=gates))
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(f, {"g.inp": [1]}, job_id=job_id, keep_open=True)
        await held.entered.wait()  # the first batch is being committed (and is held there)
        await job.send("g.inp", 2)  # step 2 starts while that flush is under way
        assert journal._flushing is not None
        held.release.set()
        await asyncio.shield(journal._flushing)  # that flush, and whatever it took on after
        records = await journal.records_of(job_id)
        assert not job.finished and not gates[2].is_set()  # step 2 is still running
        assert [(r["t"], r.get("seq")) for r in records if r["t"] in ("start", "done")][-1] == ("start", 2)
        assert restore_from(records, f).rerun_attempts == {"g.inp": [2]}
        gates[2].set()
        await job.close_input()
        assert (await job.wait(timeout_s=10)).status is wf.JobStatus.COMPLETED


async def test_a_journal_record_of_an_unknown_kind_is_a_job_error(store: Store) -> None:
    """A record this version cannot read (a newer format) fails the job clearly instead of
    being misread; a worker does not retry a JobError."""
    job_id = await store.submit(JobSpec(flow="double", inputs={}))
    await store.append_journal([(job_id, '[0,"d.inp",1,"input"]\n[9,"from","the future"]')])
    with pytest.raises(wf.JobError, match=r"cannot read \(\[9,\"from\""):
        await DurableJournal(store).records_of(job_id)


class EmitsTwice(wf.Routine):
    """Emits an item, works on, emits again."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def go(self, n: int, ctx: wf.Context) -> None:
        await ctx.emit(self.out, [n, "a"])
        for _ in range(5):  # the next routine starts on the first item meanwhile
            await asyncio.sleep(0)
        await ctx.emit(self.out, [n, "b"])


def emits_twice() -> wf.Flow:
    f = wf.Flow("twice")
    f.add("s1", EmitsTwice()).add("s2", Double()).add("s3", Double())
    f.connect("s1.out", "s2.inp").connect("s2.out", "s3.inp")
    f.output("s3.out")
    return f


async def test_a_resumed_job_does_not_deliver_what_its_interrupted_step_had_emitted(store: Store) -> None:
    """Issue 9 §2 on every backend: the store holds s2's ``start`` on s1's first item and not
    s1's ``done``; the resumed job reruns s1 (its first emit is not delivered again) and
    s2, and every item reaches s3 once."""
    f = emits_twice()
    job_id = await store.submit(JobSpec(flow="twice", inputs={"s1.inp": [1]}))
    first = DurableJournal(store, drop_completed=False)
    async with wf.Engine(journal=first) as engine:
        job = await engine.start(f, {"s1.inp": [1]}, job_id=job_id)
        reference = await job.wait(timeout_s=10)
    await first.close()
    records = await first.records_of(job_id)
    cut = next(i for i, r in enumerate(records) if r["t"] == "start" and r["routine"] == "s2") + 1
    assert not any(r["t"] == "done" and r["routine"] == "s1" for r in records[:cut])
    # the store as the crash left it: that prefix, and nothing of the job's outcome
    await store.clear_journal(job_id)
    await store.append_journal([(job_id, "\n".join(json.dumps(r) for r in records[:cut]))])
    second = DurableJournal(store, drop_completed=False)
    async with wf.Engine(journal=second) as engine:
        job = await engine.start(f, {"s1.inp": [1]}, job_id=job_id, restore=restore_from(records[:cut], f))
        result = await job.wait(timeout_s=10)
    await second.close()
    assert result.status is wf.JobStatus.COMPLETED
    expected = [[1, "a", 1, "a", 1, "a", 1, "a"], [1, "b", 1, "b", 1, "b", 1, "b"]]
    assert sorted(reference.outputs["s3.out"]) == expected  # (a list doubled twice)
    assert sorted(result.outputs["s3.out"]) == expected
    # the whole journal (crash, then resume) replays to a finished job
    combined = await second.records_of(job_id)
    assert restore_from(combined, f).queues == {}
    assert [(r["routine"], r["seq"], r["attempt"]) for r in combined[cut:] if r["t"] == "start"][:2] == [
        ("s1", 1, 2),
        ("s2", 1, 2),
    ]


class _ByJob(LogJournal):
    """A ``LogJournal`` of each job apart (one engine runs both jobs)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_job: dict[str, list[Any]] = {}

    def add(self, job: wf.Job, record: Any) -> None:
        super().add(job, record)
        self.by_job.setdefault(job.id, []).append(self.records[-1])


async def test_an_unfenced_journal_writes_the_jobs_the_store_holds_beside_one_it_does_not(
    store: Store,
) -> None:
    # (review s18b N3: Redis failed the whole batch with a plain StoreError, so every flush
    # failed again and the held job's records were never written)
    held = await store.submit(JobSpec(flow="double", inputs={"d.inp": [1, 2]}))
    lost: list[str] = []
    durable = DurableJournal(store, max_delay_s=60, on_lost=lost.append)
    log = _ByJob()
    async with wf.Engine(journal=wf.Journals(durable, log)) as engine:
        jobs = [
            await engine.start(flow(), {"d.inp": [1, 2]}, job_id=job_id, keep_open=True)
            for job_id in (held, "not-in-the-store")
        ]
        for job in jobs:
            await job.pause()
        await durable.flush()  # one batch of both jobs' records
        assert lost == ["not-in-the-store"]
        assert durable.error is None
        stored = await durable.records_of(held)
        assert stored and stored == json.loads(json.dumps(log.by_job[held][: len(stored)]))
        assert await store.read_journal("not-in-the-store") == []
        await durable.flush()  # nothing left over: the next flush writes only what is new
        assert await durable.records_of(held) == stored
