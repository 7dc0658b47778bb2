"""SQLite store call latency while a CPU-bound job keeps the event loop busy.

``python -m benchmarks.store_latency [--items N] [--calls N] [--repeats R] [--json PATH]``

A worker's lease heartbeat, claims and step rows are SQLite store calls made from
the same event loop as the jobs it runs, and the SQLite store runs them on a thread
of its own, which needs the GIL back from the busy loop after every SQLite call.
This times ``store.get(job_id)`` (one read on that thread), one call after another:

- on an idle loop (the baseline);
- while a 3-routine async chain of ``--items`` items keeps the loop busy, with the
  runtime's GIL hand-off (``weirflow.runtime.gil``), as shipped;
- the same with the hand-off switched off (the runners' ``let_threads_in``
  replaced by a no-op), to show what it is for.

Each busy run also reports how long the job took: the hand-off costs the job
time while store calls are in flight (here they always are).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import weirflow as wf
import weirflow.runtime.runner as runner_module
from weirflow.durable import JobSpec, open_store

from .flows import chain


async def measure(items: int, calls: int) -> dict[str, Any]:
    """Latencies (ms) on an idle loop, then during a busy job; and the job's time."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'latency.db'}")
        await store.open()
        try:
            job_id = await store.submit(JobSpec(flow="f", inputs={}))

            async def timed() -> float:
                t0 = time.perf_counter()
                if await store.get(job_id) is None:
                    raise RuntimeError("the job vanished from the store")
                return (time.perf_counter() - t0) * 1000

            idle = [await timed() for _ in range(calls)]
            busy: list[float] = []
            async with wf.Engine() as engine:
                t0 = time.perf_counter()
                job = await engine.start(chain(stages=3), {"r0.inp": list(range(items))})
                while not job.finished and len(busy) < calls:  # calls made while the job runs
                    busy.append(await timed())  # (the last may end after the job: it counts)
                result = await job.wait()
                job_s = time.perf_counter() - t0
            if result.status is not wf.JobStatus.COMPLETED:
                raise RuntimeError(f"benchmark job ended {result.status.value}")
        finally:
            await store.close()
    return {"idle_ms": idle, "busy_ms": busy, "job_s": job_s}


def run_side(items: int, calls: int, hand_off: bool) -> dict[str, Any]:
    shipped: Callable[[], None] = runner_module.let_threads_in
    if not hand_off:
        runner_module.let_threads_in = lambda: None  # type: ignore[assignment]
    try:
        return asyncio.run(measure(items, calls))
    finally:
        runner_module.let_threads_in = shipped  # type: ignore[assignment]


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p99": ordered[max(0, int(len(ordered) * 0.99) - 1)],
        "max": ordered[-1],
    }


def row(s: dict[str, float]) -> str:
    return f"n {s['n']:>5}  p50 {s['p50']:7.3f}  p99 {s['p99']:7.3f}  max {s['max']:8.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store_latency", description=__doc__)
    parser.add_argument("--items", type=int, default=400_000)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"with hand-off": [], "without hand-off": []}
    for _ in range(args.repeats):  # interleaved
        for side in runs:
            runs[side].append(run_side(args.items, args.calls, hand_off=side == "with hand-off"))
    idle = summary([ms for side in runs.values() for r in side for ms in r["idle_ms"]])
    print(f"SQLite store.get latency (ms), {args.repeats} runs per side, {args.items:,}-item busy chain")
    print(f"  {'idle loop':<18} {row(idle)}")
    report: dict[str, Any] = {"items": args.items, "idle": idle}
    for side, results in runs.items():
        s = summary([ms for r in results for ms in r["busy_ms"]])
        job_s = statistics.median(r["job_s"] for r in results)
        worst = [round(max(r["busy_ms"]), 1) for r in results]
        print(f"  {side:<18} {row(s)}  (max per run {worst}; job {job_s:.2f} s)")
        report[side] = {**s, "max_per_run": worst, "job_s_median": job_s}
    w, wo = report["with hand-off"], report["without hand-off"]
    job_ratio = w["job_s_median"] / wo["job_s_median"]
    print(
        f"  max with / without hand-off: {w['max'] / wo['max']:.3f}; job time with / without: {job_ratio:.2f}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
