"""CPU per step of the durable journal, in process time (steadier than wall time on a
shared machine): the 3-routine chain of ``benchmarks.durable_chain`` in memory and with
the ``DurableJournal`` on a memory store (so no store I/O: what the journal costs the
event loop), and the journal's own calls for a step, alone.

``python -m benchmarks.journal_cpu [--items N] [--repeats R] [--json PATH]``

Interleaved rounds, medians. ``chain ratio`` is the in-memory chain's CPU over the
durable one's (the durable chain benchmark's ratio, without the store).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any

import weirflow as wf
from weirflow.durable import JobSpec, open_store
from weirflow.durable.journal import DurableJournal
from weirflow.runtime.journal import Step

from .flows import chain

STAGES = 3


async def chain_cpu(n: int, durable: bool) -> float:
    flow = chain(stages=STAGES)
    items = list(range(n))
    journal, job_id = None, None
    if durable:
        store = open_store("memory://")
        await store.open()
        job_id = await store.submit(JobSpec(flow=flow.name, inputs={"r0.inp": items}))
        journal = DurableJournal(store, drop_completed=False)
    async with wf.Engine(journal=journal) as engine:
        c0 = time.process_time()
        job = await engine.start(flow, {"r0.inp": items}, job_id=job_id)
        result = await job.wait()
        if journal is not None:
            await journal.flush()
        cpu = time.process_time() - c0
    if result.stats.slots[f"r{STAGES - 1}.inp"].processed != n:
        raise RuntimeError(f"benchmark job ended {result.status.value}: {result.error}")
    return cpu / (n * STAGES)


class _Job:
    """What the journal's calls use of a job."""

    id = "bench"

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()

    def _fail(self, error: str) -> None:
        raise RuntimeError(error)


async def journal_cpu(n: int) -> float:
    """The journal's calls for one step that emits one item: start, check, enqueue, done."""
    store = open_store("memory://")
    await store.open()
    journal = DurableJournal(store, max_delay_s=3600, max_batch=10**9, drop_completed=False)
    job: Any = _Job()
    c0 = time.process_time()
    for i in range(n):
        step = Step("r1", i + 1, 1, [("inp", i)])
        journal.step_started(job, step)
        journal.check(i)
        step.emitted.append(("out", i))
        journal.enqueued(job, "r2.inp", i, step)
        step.status, step.final = "completed", True
        journal.step_completed(job, step)
    cpu = time.process_time() - c0
    if journal._timer is not None:
        journal._timer.cancel()
    return cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.journal_cpu", description=__doc__)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"memory chain": [], "durable chain": [], "journal calls": []}
    for _ in range(args.repeats):
        gc.collect()
        runs["memory chain"].append(asyncio.run(chain_cpu(args.items, durable=False)))
        gc.collect()
        runs["durable chain"].append(asyncio.run(chain_cpu(args.items, durable=True)))
        gc.collect()
        runs["journal calls"].append(asyncio.run(journal_cpu(args.items * STAGES)))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"CPU per step, {args.items:,} items x {STAGES} routines (medians of {args.repeats}):")
    for side, cpu in med.items():
        print(f"  {side:<14} {cpu * 1e6:6.2f} us")
    ratio = med["memory chain"] / med["durable chain"]
    print(f"  chain ratio    {ratio:6.3f} (memory / durable, CPU)")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs_s_per_step": runs, "median_s_per_step": med, "ratio": ratio}))


if __name__ == "__main__":
    main()
