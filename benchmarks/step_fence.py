"""What the step-start fence costs a worker: CPU per step of one in-process ``Worker``
running one job of N items through one ``async`` routine, with every step start asking
``WorkerCore._may_start`` (as it runs) and with the question taken out (the journals'
``may_start`` set to ``None``), interleaved in one process, on a memory store (no store
I/O: only what the worker's event loop pays per step).

``python -m benchmarks.step_fence [--items N] [--rounds R] [--side fenced|unfenced]``

Reported per side: the median of ``time.process_time()`` per step over the rounds, and
the ratio of the fenced side's to the unfenced one's. ``--side`` runs one job of that
side only, with no warm-up: for counting instructions (``valgrind --tool=callgrind``)
at two sizes, whose difference over the items is the instructions per step.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

import weirflow as wf
from weirflow.durable import JobSpec
from weirflow.durable.worker import Worker


@wf.routine
async def passing(item: int) -> int:
    return item


FLOW = wf.Flow("fence_bench")
FLOW.add("p", passing)
FLOW.output("p.output")


async def one_round(n: int, *, fenced: bool) -> float:
    """CPU µs per step of one job of ``n`` items in a fresh worker."""
    worker = Worker("memory://", [FLOW], worker_id="bench", lease_s=600.0)
    if not fenced:
        assert worker.journal is not None
        worker.journal.may_start = None
    async with worker as w:
        job_id = await w.store.submit(JobSpec(flow=FLOW.name, inputs={"p.input": list(range(n))}))
        gc.collect()
        c0 = time.process_time()
        while w.completed < 1:
            await w.wait_reports(w.reports)
        cpu = time.process_time() - c0
        w.stop()
    job = await w.store.get(job_id)
    assert job is not None and job.status == "completed" and job.outputs is not None
    assert len(job.outputs["p.output"]) == n
    return cpu / n * 1e6


async def run(n: int, rounds: int) -> None:
    results: dict[bool, list[float]] = {True: [], False: []}
    await one_round(min(n, 2000), fenced=True)  # warm-up (imports, caches)
    for r in range(rounds):
        for fenced in (r % 2 == 0, r % 2 != 0):  # alternate which side goes first
            results[fenced].append(await one_round(n, fenced=fenced))
    on, off = statistics.median(results[True]), statistics.median(results[False])
    print(f"items per job: {n}, rounds: {rounds}")
    print(f"fenced (may_start asked):  {on:.2f} µs CPU per step   {[round(x, 2) for x in results[True]]}")
    print(f"unfenced (may_start=None): {off:.2f} µs CPU per step   {[round(x, 2) for x in results[False]]}")
    print(f"ratio fenced / unfenced:   {on / off:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--side", choices=["fenced", "unfenced"])
    args = parser.parse_args()
    if args.side is not None:
        asyncio.run(one_round(args.items, fenced=args.side == "fenced"))
    else:
        asyncio.run(run(args.items, args.rounds))


if __name__ == "__main__":
    main()
