"""A durable worker's journals as one (``Journals``: its start fence or step rows, its
durable journal, and the engine's own journal if it had one) pass the durable journal's
short ways on (``emit_recorded``, ``call_completed``; one ``Step`` reused for a run of calls
when no member keeps steps): the durable journal takes them as often as it does alone, and
the store holds record for record, line for line, what it holds alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.durable.journal import DurableJournal, decoded
from weirflow.durable.steps import StartFence
from weirflow.runtime import Journal, LogJournal
from weirflow.runtime.journal import Step

from .test_journal_run import Forward, N, Sink, Spread, _flow


class Counting(DurableJournal):
    """Counts the steps' ends it was told the general way and the emits told the short way."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, drop_completed=False)
        self.calls = 0  # ``step_completed`` (the other calls' ends came by ``call_completed``)
        self.emits = 0

    def step_completed(self, job: Any, step: Step) -> None:
        self.calls += 1
        super().step_completed(job, step)

    def emit_recorded(self, job: Any, slot: str, item: Any, step: Step) -> bool:
        took = super().emit_recorded(job, slot, item, step)
        self.emits += took
        return took


class Starts(Journal):
    """Holds every ``Step`` told to start (to count the objects) and says it keeps none."""

    keeps_steps = False
    reads_times = False

    def __init__(self) -> None:
        self.started: list[Step] = []

    def step_started(self, job: Any, step: Step) -> None:
        self.started.append(step)


def _spread() -> wf.Flow:
    f = wf.Flow("spread")
    f.add("a", Spread(refused=[]))
    f.add("b", Forward())
    f.add("c", Sink())
    f.connect("a.out", "b.inp")
    f.connect("b.out", "c.inp")
    return f


def _allow(job_id: str) -> bool:
    return True


async def _run(store: Store, flow: wf.Flow, make: Any) -> tuple[Counting, list[str], Journal]:
    job_id = await store.submit(JobSpec(flow=flow.name, inputs={}))
    durable = Counting(store)
    journal = make(durable)
    async with wf.Engine(journal=journal) as engine:
        job = await engine.start(flow, {"a.inp": list(range(N))}, job_id=job_id)
        result = await job.wait(timeout_s=30)
        assert result.status is wf.JobStatus.COMPLETED, result.error
        await durable.flush()
    lines = "\n".join(await store.read_journal(job_id)).split("\n")
    return durable, lines, journal


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
@pytest.mark.parametrize("flow", [_flow, _spread], ids=["mixed", "spread"])
async def test_a_worker_s_journals_take_the_durable_journal_s_short_ways(store: Store, flow: Any) -> None:
    alone, lines, _ = await _run(store, flow(), lambda d: d)
    assert alone.calls < 2 * N < 2 * alone.emits  # (most of 3 x N calls' ends, and emits, the short way)
    records = decoded("alone", lines)
    # a worker recording no step rows: its start fence, then its durable journal
    fenced, fenced_lines, _ = await _run(store, flow(), lambda d: wf.Journals(StartFence(_allow), d))
    assert (fenced.calls, fenced.emits) == (alone.calls, alone.emits)
    assert fenced_lines == lines  # (line for line: the same runs of steps)
    # ... on an engine that had a journal of its own (its records are the same too)
    log = LogJournal()
    starts = Starts()
    both, both_lines, _ = await _run(store, flow(), lambda d: wf.Journals(log, StartFence(_allow), d, starts))
    assert (both.calls, both.emits) == (alone.calls, alone.emits)
    assert decoded("both", both_lines) == records
    assert json.loads(json.dumps(log.records)) == records
    # no member keeps steps: one ``Step`` per run of calls, not one per call
    distinct = len({id(s) for s in starts.started})
    assert distinct < len(starts.started) / 2, (distinct, len(starts.started))
