"""The 5-routine async chain against plain asyncio, timed by CPU time:
``python -m benchmarks.chain_cpu [ITEMS] [ROUNDS]`` (default 50,000 items, 5 rounds).

On a machine shared with other busy processes, wall time mostly measures who
else got the cores; the CPU time of this process is much less sensitive to
them. Rounds are interleaved (the order flips each round); the medians and their
ratio are printed, and each round's ratio.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from . import asyncio_baseline as plain
from . import weirflow_runs as flowed


def cpu_items_per_s(fn: Callable[[int], Coroutine[Any, Any, float]], n: int) -> float:
    gc.collect()
    start = time.process_time()
    asyncio.run(fn(n))
    return n / (time.process_time() - start)


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 50_000
    rounds = int(argv[1]) if len(argv) > 1 else 5
    base: list[float] = []
    ours: list[float] = []
    for rnd in range(rounds):
        sides = [(base, plain.chain_seconds), (ours, flowed.chain_seconds)]
        if rnd % 2:
            sides.reverse()
        for out, fn in sides:
            out.append(cpu_items_per_s(fn, n))
    mb, mo = statistics.median(base), statistics.median(ours)
    each = ", ".join(f"{o / b:.3f}" for o, b in zip(ours, base, strict=True))
    print(f"chain, {n:,} items, CPU time: asyncio {mb:,.0f}/s, weirflow {mo:,.0f}/s, ratio {mo / mb:.3f}")
    print(f"ratio per round: {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
