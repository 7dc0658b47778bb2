"""What the end of a short journaled job costs: a worker's journals (step rows and the
durable journal, on a memory store: no store I/O) on the engine alone, one job at a
time (``start``, ``wait``, ``forget``), as the in-process worker runs each claimed job.

``python -m benchmarks.journal_close [--flow noop|steps3] [--jobs N] [--rounds R]``

Reported: event-loop iterations per job and Python calls per job (cProfile), both
deterministic, and CPU per job (``time.process_time``, median of the rounds). Compare two
trees by running it with ``PYTHONPATH=<tree>/src`` (the counts need no interleaving; for
the CPU column alternate the trees and read the medians).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
from typing import Any

import weirflow as wf
from weirflow.durable import JobSpec, open_store
from weirflow.durable.journal import DurableJournal
from weirflow.durable.steps import StepJournal

from .durable_vs import noop, steps3


class CountingLoop(asyncio.SelectorEventLoop):
    """Counts its iterations (``_run_once``: CPython's event loop, one pass of ready callbacks)."""

    iterations = 0

    def _run_once(self) -> None:
        self.iterations += 1
        super()._run_once()  # type: ignore[misc]


async def run_jobs(flow: wf.Flow, n: int, profile: cProfile.Profile | None = None) -> tuple[float, int]:
    """(CPU seconds, loop iterations) for ``n`` jobs of ``flow``, one at a time."""
    store = open_store("memory://")
    await store.open()
    steps = StepJournal(store, worker_id="bench", flush_s=3600)
    durable = DurableJournal(store, max_delay_s=3600)
    slot = next(iter(flow.routines)) + ".input"
    ids = [await store.submit(JobSpec(flow=flow.name, inputs={slot: [i]})) for i in range(n)]
    loop = asyncio.get_running_loop()
    assert isinstance(loop, CountingLoop)
    async with wf.Engine(journal=wf.Journals(steps, durable)) as engine:
        i0, c0 = loop.iterations, time.process_time()
        if profile is not None:
            profile.enable()
        for i, job_id in enumerate(ids):
            steps.begin(job_id, 1)
            job = await engine.start(flow, {slot: [i]}, job_id=job_id)
            await job.wait()
            engine.forget(job_id)
        if profile is not None:
            profile.disable()
        cpu, iterations = time.process_time() - c0, loop.iterations - i0
    await store.close()
    return cpu, iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flow", choices=["noop", "steps3"], default="noop")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    flow = {"noop": noop, "steps3": steps3}[args.flow]()
    n = args.jobs

    def run(profile: cProfile.Profile | None = None) -> tuple[float, int]:
        out: list[tuple[float, int]] = []

        async def go() -> None:
            out.append(await run_jobs(flow, n, profile))

        with asyncio.Runner(loop_factory=CountingLoop) as runner:
            runner.run(go())
        return out[0]

    run()  # warm-up
    profile = cProfile.Profile()
    run(profile)
    calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    rounds = [run() for _ in range(args.rounds)]
    cpu: Any = statistics.median(c for c, _ in rounds) / n * 1e6
    iterations = rounds[0][1] / n
    print(
        f"{args.flow}: {iterations:.2f} loop iterations/job, {calls / n:.0f} Python calls/job, "
        f"{cpu:.1f} µs CPU/job (median of {args.rounds}; rounds "
        + ", ".join(f"{c / n * 1e6:.1f}" for c, _ in rounds)
        + ")"
    )


if __name__ == "__main__":
    main()
