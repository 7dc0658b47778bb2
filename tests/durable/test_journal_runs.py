"""Runs of whole steps in the durable journal (``[4, ...]``, ``[5, ...]``): what the store
holds decodes to the records a ``LogJournal`` makes, for every kind of item, and a
journal written before runs existed (whole steps one per line) still resumes."""

from __future__ import annotations

import json
from typing import Any

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.durable.journal import DurableJournal, decoded
from weirflow.runtime import LogJournal, restore_from

ITEMS: list[Any] = [1, -(2**63), 2**64 - 1, "a", "é\\u0000 \n", 1.5, -0.0, True, None, [1, "x"], {"k": []}]


class Forward(wf.Routine):
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def forward(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


class Changer(wf.Routine):
    """Emits a list, then changes it (the journal holds it as it was emitted)."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def forward(self, item: Any, ctx: wf.Context) -> None:
        box = [item]
        await ctx.emit(self.out, box)
        box.append("changed")


class Sink(wf.Routine):
    inp = wf.Slot()
    seen: list[Any]

    @inp.handler
    async def take(self, item: Any, ctx: wf.Context) -> None:
        self.seen.append(item)


def chain(first: wf.Routine, seen: list[Any]) -> wf.Flow:
    f = wf.Flow("chain")
    f.add("a", first)
    f.add("b", Forward())
    f.add("c", Sink(seen=seen))
    f.connect("a.out", "b.inp")
    f.connect("b.out", "c.inp")
    return f


def lines(rows: list[str]) -> list[str]:
    return [line for row in rows for line in row.split("\n")]


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
async def test_runs_of_steps_hold_every_kind_of_item_as_a_log_journal_would(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="chain", inputs={}))
    durable, log = DurableJournal(store, drop_completed=False), LogJournal()
    seen: list[Any] = []
    async with wf.Engine(journal=wf.Journals(durable, log)) as engine:
        job = await engine.start(chain(Forward(), seen), {"a.inp": ITEMS}, job_id=job_id)
        assert (await job.wait(timeout_s=10)).status is wf.JobStatus.COMPLETED
        await durable.flush()
    rows = await store.read_journal(job_id)
    assert any(line.startswith("[5,") for line in lines(rows))  # (runs were written)
    assert any(line.startswith("[4,") for line in lines(rows))
    assert decoded(job_id, rows) == json.loads(json.dumps(log.records))
    assert seen == ITEMS


@pytest.mark.parametrize("store_url", ["memory"], indirect=True)
async def test_a_run_holds_an_item_as_it_was_emitted(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="chain", inputs={}))
    durable = DurableJournal(store, drop_completed=False)
    async with wf.Engine(journal=durable) as engine:
        job = await engine.start(chain(Changer(), []), {"a.inp": [1, 2]}, job_id=job_id)
        assert (await job.wait(timeout_s=10)).status is wf.JobStatus.COMPLETED
        await durable.flush()
    records = await durable.records_of(job_id)
    assert [r["item"] for r in records if r["t"] == "enq" and r["slot"] == "b.inp"] == [[1], [2]]
    assert [r["emitted"] for r in records if r["t"] == "done" and r["routine"] == "a"] == [
        [["out", [1]]],
        [["out", [2]]],
    ]


# A journal as the version before runs wrote it (one whole step a line, ``[3, ...]``): the
# chain a -> b -> c of ``chain`` fed 1, 2, 3, cut after a's first two steps and b's first.
OLD_JOURNAL = [
    '[0,"a.inp",1,"input"]\n[0,"a.inp",2,"input"]\n[0,"a.inp",3,"input"]',
    '[3,"a",1,1,["inp"],[["b.inp",0]],{},[["out",1]]]\n[3,"a",2,1,["inp"],[["b.inp",0]],{},[["out",2]]]',
    '[3,"b",1,1,["inp"],[["c.inp",0]],{},[["out",1]]]',
]


@pytest.mark.parametrize("store_url", ["memory"], indirect=True)
async def test_a_journal_written_before_runs_resumes_and_goes_on_in_runs(store: Store) -> None:
    job_id = await store.submit(JobSpec(flow="chain", inputs={}))
    for row in OLD_JOURNAL:
        await store.append_journal([(job_id, row)])
    durable = DurableJournal(store, drop_completed=False)
    seen: list[Any] = []
    flow = chain(Forward(), seen)
    restore = restore_from(await durable.records_of(job_id), flow)
    assert restore.queues == {"a.inp": [3], "b.inp": [2], "c.inp": [1]}
    async with wf.Engine(journal=durable) as engine:
        job = await engine.start(flow, {"a.inp": [1, 2, 3]}, job_id=job_id, restore=restore)
        assert (await job.wait(timeout_s=10)).status is wf.JobStatus.COMPLETED
        await durable.flush()
    assert sorted(seen) == [1, 2, 3]
    rows = await store.read_journal(job_id)
    assert rows[: len(OLD_JOURNAL)] == OLD_JOURNAL
    assert any(line.startswith("[5,") for line in lines(rows[len(OLD_JOURNAL) :]))
    # the whole journal, old lines and new, resumes to nothing left to do
    again = restore_from(await durable.records_of(job_id), flow)
    assert not any(again.queues.values())


@pytest.mark.parametrize("store_url", ["memory"], indirect=True)
async def test_a_completed_job_drops_its_open_run_with_its_other_records(store: Store) -> None:
    """(A run's line stands for all its steps: the count of what is buffered stays right,
    and with it when a batch is full and when routines wait for the journal.)"""
    job_id = await store.submit(JobSpec(flow="chain", inputs={}))
    durable = DurableJournal(store, max_delay_s=60)  # nothing is flushed by time
    seen: list[Any] = []
    async with wf.Engine(journal=durable) as engine:
        job = await engine.start(chain(Forward(), seen), {"a.inp": [1, 2, 3]}, job_id=job_id)
        assert (await job.wait(timeout_s=10)).status is wf.JobStatus.COMPLETED
        await durable.flush()
    assert await store.read_journal(job_id) == []  # its outcome says it all
    assert durable.committed == 0 and durable.buffered == 0
    assert durable.dropped == 3 + 3 * 3 + 1  # the fed inputs, each step of the runs, its end
