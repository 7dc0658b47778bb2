"""Where handlers run: ``python -m benchmarks.executors [--quick] [--rounds N] [--json PATH]``.

Five pairs, each a measurement and its baseline, run in interleaved rounds (the order
flips every round) in this one process; the table gives the median of each side and
the ratio of the medians:

- ``def_chain``: the 5-routine forwarding chain with plain ``def`` handlers, against
  the same chain with ``async def`` handlers;
- ``chain_gen``: routilux 1.1.0's ``chain_gen`` topology (``benchmarks.routilux_side``)
  with ``def`` handlers on weirflow, against routilux itself (skipped, saying so, when
  routilux is not installed: it lives in the benchmark's own venv);
- ``sleep16``: a ``def`` routine whose handler does ``time.sleep(0.001)``, concurrency
  16, against concurrency 1;
- ``io16``: a 3-routine chain of ``async`` handlers doing ``await asyncio.sleep(0.001)``
  with concurrency 16, against 3 stages of 16 asyncio worker tasks each;
- ``cpu``: a 5-routine chain whose handlers each do about 50 us of pure-Python work,
  with ``executor = "process"`` (``max_processes=2``), against the single-core loop
  calling the same five functions; the process run's outputs are checked equal to the
  in-process run's;
- ``cpu_c2``: the same with ``concurrency = 2`` on each routine. Consecutive process
  routines run inside one child request (``runtime.process_chain.Chain``); the chain is
  cut into parts by what its routines cost (``process_chain.cut``): with ``concurrency
  = 1`` 2 + 2 + 1 routines, one request in flight per part, over the two children; with
  2, each of two requests in flight runs the whole chain.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import weirflow as wf

from . import routilux_side
from .flows import CAPACITY
from .weirflow_runs import chain_seconds

STAGES = 5
IO_STAGES = 3
WIDTH = 16


def spin(n: int, rounds: int) -> int:
    x = n
    for _ in range(rounds):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def calibrate(target_s: float = 50e-6) -> int:
    """Rounds of ``spin`` that take about ``target_s`` of CPU here.

    Measured in CPU time (``time.process_time``), not by the wall clock: on a loaded
    machine the wall clock also counts the time other processes had the core, and the
    calibration then picked a tenth of the work (54-67 rounds at load 12, where a quiet
    machine's 50 us is several hundred), so the handlers did a few us each."""
    rounds = 1000
    t0 = time.process_time()
    for i in range(200):
        spin(i, rounds)
    per = (time.process_time() - t0) / 200
    return max(1, round(rounds * target_s / per))


class Spin(wf.Routine):
    inp = wf.Slot(capacity=CAPACITY)
    out = wf.Event()

    def __init__(self, *, rounds: int) -> None:
        super().__init__(rounds=rounds)

    @inp.handler
    def work(self, n: int, ctx: wf.Context) -> None:
        ctx.emit(self.out, spin(n, self.rounds))


class ProcessSpin(Spin):
    executor = "process"


class ProcessSpin2(ProcessSpin):
    """Two calls at once per routine: two requests of the chain in flight, one per child."""

    concurrency = 2


class Keep(wf.Routine):
    inp = wf.Slot(capacity=CAPACITY)
    out = wf.Event()

    @inp.handler
    def keep(self, n: int, ctx: wf.Context) -> None:
        ctx.emit(self.out, n)


def spin_chain(cls: type[Spin], rounds: int) -> wf.Flow:
    flow = wf.Flow(f"cpu-{cls.__name__}")
    for i in range(STAGES):
        flow.add(f"r{i}", cls(rounds=rounds))
    flow.add("out", Keep())
    for i in range(STAGES):
        flow.connect(f"r{i}.out", f"r{i + 1}.inp" if i + 1 < STAGES else "out.inp")
    flow.output("out.out")
    return flow


async def cpu_weirflow(n: int, rounds: int, cls: type[Spin] = ProcessSpin) -> tuple[float, list[Any]]:
    flow = spin_chain(cls, rounds)
    async with wf.Engine(max_processes=2) as engine:
        if cls.executor == "process":  # process start-up (and imports there) is not timed
            await asyncio.to_thread(engine.processes.warm, flow.routines.values())
        t0 = time.perf_counter()
        job = await engine.start(flow, {"r0.inp": list(range(n))})
        result = await job.wait()
        dt = time.perf_counter() - t0
    if result.status is not wf.JobStatus.COMPLETED:
        raise RuntimeError(f"cpu chain: {result.status.value}: {result.error}")
    return dt, result.outputs["out.out"]


def cpu_loop(n: int, rounds: int) -> float:
    t0 = time.perf_counter()
    out = []
    for i in range(n):
        x = i
        for _ in range(STAGES):
            x = spin(x, rounds)
        out.append(x)
    return time.perf_counter() - t0


class Nap(wf.Routine):
    inp = wf.Slot(capacity=CAPACITY)

    @inp.handler
    def nap(self, item: Any, ctx: wf.Context) -> None:
        time.sleep(0.001)  # the I/O being waited for


class Nap16(Nap):
    concurrency = WIDTH


async def sleep_seconds(n: int, cls: type[Nap]) -> float:
    flow = wf.Flow("nap")
    flow.add("nap", cls())
    async with wf.Engine() as engine:
        t0 = time.perf_counter()
        job = await engine.start(flow, {"nap.inp": list(range(n))})
        result = await job.wait()
        dt = time.perf_counter() - t0
    if result.stats.slots["nap.inp"].processed != n:
        raise RuntimeError("nap: items missing")
    return dt


class IoStep(wf.Routine):
    concurrency = WIDTH
    inp = wf.Slot(capacity=CAPACITY)
    out = wf.Event()

    @inp.handler
    async def step(self, item: Any, ctx: wf.Context) -> None:
        await asyncio.sleep(0.001)
        await ctx.emit(self.out, item)


async def io_weirflow(n: int) -> float:
    flow = wf.Flow("io16")
    for i in range(IO_STAGES):
        flow.add(f"s{i}", IoStep())
    for i in range(IO_STAGES - 1):
        flow.connect(f"s{i}.out", f"s{i + 1}.inp")
    async with wf.Engine() as engine:
        t0 = time.perf_counter()
        job = await engine.start(flow, {"s0.inp": list(range(n))})
        result = await job.wait()
        dt = time.perf_counter() - t0
    if result.stats.slots[f"s{IO_STAGES - 1}.inp"].processed != n:
        raise RuntimeError("io16: items missing")
    return dt


async def io_asyncio(n: int) -> float:
    """``IO_STAGES`` stages of ``WIDTH`` worker tasks over bounded queues."""
    qs: list[asyncio.Queue[Any]] = [asyncio.Queue(maxsize=CAPACITY) for _ in range(IO_STAGES)]
    done = asyncio.Event()
    count = 0

    async def worker(i: int) -> None:
        nonlocal count
        while True:
            item = await qs[i].get()
            await asyncio.sleep(0.001)
            if i + 1 < IO_STAGES:
                await qs[i + 1].put(item)
            else:
                count += 1
                if count == n:
                    done.set()

    tasks = [asyncio.create_task(worker(i)) for i in range(IO_STAGES) for _ in range(WIDTH)]
    t0 = time.perf_counter()
    for i in range(n):
        await qs[0].put(i)
    await done.wait()
    dt = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return dt


@dataclass(frozen=True)
class Sizes:
    chain: int
    chain_gen: int
    nap1: int
    nap16: int
    io: int
    cpu: int
    rounds: int


FULL = Sizes(chain=50_000, chain_gen=5_000, nap1=500, nap16=5_000, io=5_000, cpu=2_000, rounds=3)
QUICK = Sizes(chain=2_000, chain_gen=500, nap1=50, nap16=400, io=400, cpu=100, rounds=1)

Side = Callable[[], float]


def pairs(sizes: Sizes, rounds: int) -> list[tuple[str, str, int, Side, str, int, Side]]:
    """(name, side, items, measure, baseline side, items, measure)."""
    out: list[tuple[str, str, int, Side, str, int, Side]] = [
        (
            "def_chain",
            "def",
            sizes.chain,
            lambda: asyncio.run(chain_seconds(sizes.chain, threaded=True)),
            "async",
            sizes.chain,
            lambda: asyncio.run(chain_seconds(sizes.chain)),
        ),
    ]
    if routilux_side.available():
        out.append(
            (
                "chain_gen",
                "weirflow_def",
                sizes.chain_gen,
                lambda: asyncio.run(routilux_side.weirflow_seconds(sizes.chain_gen)),
                "routilux_1.1.0",
                sizes.chain_gen,
                lambda: routilux_side.routilux_seconds(sizes.chain_gen),
            )
        )
    out += [
        (
            "sleep16",
            "concurrency_16",
            sizes.nap16,
            lambda: asyncio.run(sleep_seconds(sizes.nap16, Nap16)),
            "concurrency_1",
            sizes.nap1,
            lambda: asyncio.run(sleep_seconds(sizes.nap1, Nap)),
        ),
        (
            "io16",
            "weirflow",
            sizes.io,
            lambda: asyncio.run(io_weirflow(sizes.io)),
            "asyncio_16_workers",
            sizes.io,
            lambda: asyncio.run(io_asyncio(sizes.io)),
        ),
        (
            "cpu",
            "process_executor",
            sizes.cpu,
            lambda: asyncio.run(cpu_weirflow(sizes.cpu, rounds))[0],
            "single_core_loop",
            sizes.cpu,
            lambda: cpu_loop(sizes.cpu, rounds),
        ),
        (
            "cpu_c2",
            "process_concurrency_2",
            sizes.cpu,
            lambda: asyncio.run(cpu_weirflow(sizes.cpu, rounds, ProcessSpin2))[0],
            "single_core_loop",
            sizes.cpu,
            lambda: cpu_loop(sizes.cpu, rounds),
        ),
    ]
    return out


TARGETS = {"def_chain": 0.5, "chain_gen": 10.0, "sleep16": 10.0, "io16": 0.9, "cpu": 1.7, "cpu_c2": 1.7}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def collect(sizes: Sizes) -> dict[str, Any]:
    rounds = calibrate()
    log(f"spin rounds for ~50 us: {rounds}")
    if not routilux_side.available():
        log(
            "chain_gen: SKIPPED - routilux is not installed here (pip install routilux==1.1.0 serilux==0.3.1)"
        )
    table = pairs(sizes, rounds)
    runs: dict[str, list[float]] = {}
    for rnd in range(sizes.rounds):
        for name, side, n, fn, base, bn, bfn in table:
            sides = [(side, n, fn), (base, bn, bfn)]
            if rnd % 2:
                sides.reverse()
            for label, items, measure in sides:
                gc.collect()
                rate = items / measure()
                runs.setdefault(f"{name}:{label}", []).append(rate)
                log(f"  round {rnd + 1}/{sizes.rounds} {name:<10} {label:<18} {rate:>12,.0f} items/s")
    # the process executor's outputs equal the in-process run's
    _, there = asyncio.run(cpu_weirflow(min(sizes.cpu, 200), rounds))
    _, wide = asyncio.run(cpu_weirflow(min(sizes.cpu, 200), rounds, ProcessSpin2))
    _, here = asyncio.run(cpu_weirflow(min(sizes.cpu, 200), rounds, Spin))
    if there != here or sorted(wide) != sorted(here):
        raise RuntimeError("the process executor's outputs differ from the in-process run's")
    results: dict[str, Any] = {}
    for name, side, _, _, base, _, _ in table:
        ours = statistics.median(runs[f"{name}:{side}"])
        theirs = statistics.median(runs[f"{name}:{base}"])
        results[name] = {
            side: ours,
            base: theirs,
            "ratio": ours / theirs,
            "target": TARGETS[name],
            "met": ours / theirs >= TARGETS[name],
        }
    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "sizes": sizes.__dict__,
        "spin_rounds": rounds,
        "results": results,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.executors", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (smoke test)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(**{**sizes.__dict__, "rounds": args.rounds})
    out = collect(sizes)
    print(
        f"{'pair':<10} {'measured':<20} {'items/s':>12} {'baseline':<20} {'items/s':>12} {'ratio':>7} target"
    )
    for name, r in out["results"].items():
        (side, ours), (base, theirs) = list(r.items())[:2]
        met = "met" if r["met"] else "NOT met"
        print(
            f"{name:<10} {side:<20} {ours:>12,.0f} {base:<20} {theirs:>12,.0f} "
            f"{r['ratio']:>7.2f} >= {r['target']} {met}"
        )
    print(f"load average during the run: {out['load_average']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
