"""Debugger overhead: the 5-routine chain without a debugger, with a debug session
attached (no breakpoint), and with a conditional connection breakpoint whose CEL
condition is evaluated on every item and never true. Baseline: the same chain
without a debugger, in the same run."""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time

import weirflow as wf
from weirflow.debug import DebugSession

from .flows import chain
from .weirflow_runs import HEAD, TAIL, _check

MODES = ("off", "attached", "condition")


async def chain_seconds(n: int, mode: str) -> float:
    flow = chain()
    items = list(range(n))
    async with wf.Engine() as engine:
        t0 = time.perf_counter()
        job = await engine.start(flow, {HEAD: items})
        if mode != "off":  # attached before the first item moves: start does not yield
            session = DebugSession.attach(job)
            if mode == "condition":
                session.add_breakpoint("connection", "r1.out -> r2.inp", "item < 0")
        result = await job.wait()
        dt = time.perf_counter() - t0
    _check(result, TAIL, n)
    return dt


def measure(n: int, repeats: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    runs: dict[str, list[float]] = {m: [] for m in MODES}
    for rnd in range(repeats):
        order = MODES if rnd % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            gc.collect()
            rate = n / asyncio.run(chain_seconds(n, mode))
            runs[mode].append(rate)
            print(f"  round {rnd + 1}/{repeats} debugger {mode:<9} {rate:>12,.0f} items/s", file=sys.stderr)
    med = {m: statistics.median(v) for m, v in runs.items()}
    metrics = {
        "debug_off_items_per_s": med["off"],
        "debug_attached_items_per_s": med["attached"],
        "debug_condition_items_per_s": med["condition"],
        "debug_attached_ratio": med["attached"] / med["off"],
        "debug_condition_ratio": med["condition"] / med["off"],
    }
    return metrics, {f"debug_{m}": v for m, v in runs.items()}
