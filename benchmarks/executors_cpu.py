"""``def_chain`` and ``cpu`` of ``benchmarks.executors`` as CPU time per item, beside the rates.

``python -m benchmarks.executors_cpu [ROUNDS] [OTHER_SRC] [--only def_chain|cpu]``: each
round runs, each in a fresh subprocess and in an order that flips every round:

- ``def_chain``: the 5-routine forwarding chain with ``def`` handlers (50,000 items) with
  this checkout, with ``OTHER_SRC`` if given (the ``src`` folder of another checkout:
  ``git archive COMMIT src | tar -x -C DIR``), and the ``async`` chain (this checkout);
- ``cpu``: the 5-routine chain of ~50 us pure-Python handlers with ``executor =
  "process"`` (2,000 items, ``max_processes=2``) with this checkout and ``OTHER_SRC``,
  the same with ``concurrency = 2`` on each routine (``process_c2``, and
  ``process_c2_other`` with ``OTHER_SRC``), and the single-core loop.

Each side reports the CPU time its process used per item (``time.process_time``: every
thread of the process) and its items/s; a process-executor side also reports the CPU
its children used per item while the clock ran (``/proc/PID/stat``, Linux). The machine's
cores are shared with other work, so the wall-clock rate of one side swings with what
else runs; the CPU a side spends per item moves much less, and where one core is the
bottleneck (the parent's threads, which share the GIL) it is what caps the rate. Prints
every round to stderr, then the medians and the ratios against the baseline of each pair.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAIN_ITEMS = 50_000
CPU_ITEMS = 2_000

CHAIN = """import asyncio, time
from benchmarks.weirflow_runs import chain_seconds
t, w = time.process_time(), time.perf_counter()
asyncio.run(chain_seconds({n}, threaded={threaded}))
print((time.process_time() - t) / {n} * 1e6, {n} / (time.perf_counter() - w), 0.0)"""

CPU_PROCESS = """import asyncio, multiprocessing, os, time
import weirflow as wf
from benchmarks.executors import {cls}, spin_chain

def ticks():
    out = 0
    for p in multiprocessing.active_children():
        with open(f"/proc/{{p.pid}}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out += int(fields[11]) + int(fields[12])
    return out / os.sysconf("SC_CLK_TCK")

async def main():
    flow = spin_chain({cls}, {rounds})
    async with wf.Engine(max_processes=2) as engine:
        await asyncio.to_thread(engine.processes.warm, flow.routines.values())
        c0, t, w = ticks(), time.process_time(), time.perf_counter()
        job = await engine.start(flow, {{"r0.inp": list(range({n}))}})
        result = await job.wait()
        wall, cpu, children = time.perf_counter() - w, time.process_time() - t, ticks() - c0
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert len(result.outputs["out.out"]) == {n}
    print(cpu / {n} * 1e6, {n} / wall, children / {n} * 1e6)

asyncio.run(main())"""

CPU_LOOP = """import time
from benchmarks.executors import cpu_loop
t = time.process_time()
wall = cpu_loop({n}, {rounds})
print((time.process_time() - t) / {n} * 1e6, {n} / wall, 0.0)"""


def _run(src: str, code: str) -> tuple[float, float, float]:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[-3]), float(out[-2]), float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.executors_cpu", description=__doc__)
    parser.add_argument("rounds", type=int, nargs="?", default=5)
    parser.add_argument("other_src", nargs="?")
    parser.add_argument("--only", choices=["def_chain", "cpu"])
    args = parser.parse_args()
    here = str(ROOT / "src")
    rounds = subprocess.run(
        [sys.executable, "-c", "from benchmarks.executors import calibrate; print(calibrate())"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=f"{here}{os.pathsep}{ROOT}"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    print(f"spin rounds for ~50 us: {rounds}", file=sys.stderr, flush=True)
    sides: dict[str, tuple[str, str]] = {}
    pairs: dict[str, tuple[list[str], str]] = {}
    if args.only in (None, "def_chain"):
        chain_def = CHAIN.format(n=CHAIN_ITEMS, threaded=True)
        sides["def"] = (here, chain_def)
        if args.other_src:
            sides["def_other"] = (args.other_src, chain_def)
        sides["async"] = (here, CHAIN.format(n=CHAIN_ITEMS, threaded=False))
        pairs["def_chain"] = ([k for k in sides if k.startswith("def")], "async")
    if args.only in (None, "cpu"):
        process = CPU_PROCESS.format(n=CPU_ITEMS, rounds=rounds, cls="ProcessSpin")
        sides["process"] = (here, process)
        if args.other_src:
            sides["process_other"] = (args.other_src, process)
        process_c2 = CPU_PROCESS.format(n=CPU_ITEMS, rounds=rounds, cls="ProcessSpin2")
        sides["process_c2"] = (here, process_c2)
        if args.other_src:
            sides["process_c2_other"] = (args.other_src, process_c2)
        sides["one_core"] = (here, CPU_LOOP.format(n=CPU_ITEMS, rounds=rounds))
        pairs["cpu"] = ([k for k in sides if k.startswith("process")], "one_core")
    got: dict[str, list[tuple[float, float, float]]] = {k: [] for k in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            got[name].append(_run(*sides[name]))
        now = " ".join(
            f"{k}={v[-1][1]:.0f}/s,{v[-1][0]:.1f}us" + (f"+{v[-1][2]:.0f}us" if v[-1][2] else "")
            for k, v in got.items()
        )
        print(f"round {r + 1}: load {os.getloadavg()[0]:.1f} {now}", file=sys.stderr, flush=True)
    for pair, (measured, base) in pairs.items():
        base_cpu = statistics.median(c for c, _, _ in got[base])
        base_rate = statistics.median(s for _, s, _ in got[base])
        print(f"{pair}: {base} {base_rate:,.0f} items/s, {base_cpu:.1f} us CPU/item")
        for name in measured:
            cpu = statistics.median(c for c, _, _ in got[name])
            rate = statistics.median(s for _, s, _ in got[name])
            children = statistics.median(k for _, _, k in got[name])
            extra = f" (+ {children:.1f} us in its children)" if children else ""
            print(
                f"  {name}: {rate:,.0f} items/s ({rate / base_rate:.2f} x), "
                f"{cpu:.1f} us CPU/item{extra} ({base_cpu / cpu:.2f} x the baseline's efficiency)"
            )


if __name__ == "__main__":
    main()
