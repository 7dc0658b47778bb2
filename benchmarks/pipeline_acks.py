"""What a pipeline child's acknowledgements cost a job: the 5-routine async chain run by
an ``Engine`` with no hook, with the hooks of a pipeline child that was never sent
anything (``_Acks``: dead letters only), and with those of one that was (``_Acks`` and
``_Ends``, which overrides ``on_handler_end`` and so takes the chain off the runner's
plain fast path).
``python -m benchmarks.pipeline_acks [ITEMS] [ROUNDS]`` (default 50,000 items, 7 rounds).

No item is sent here, so the hooks have nothing to acknowledge: this is the cost every
item of a pipeline pays once it has been sent an item. Timed by this process's CPU
time (see ``chain_cpu``); rounds interleaved, the order flipped each round; the medians,
the ratios to no hook and each round's ratio are printed.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from typing import Any

import weirflow as wf
from weirflow.supervise.pipeline_child import _Acks, _Ends

from .flows import STAGES, chain

HEAD = "r0.inp"
TAIL = f"r{STAGES - 1}.inp"


class _Pipe:
    """Where the hook would write (nothing is written: no item is sent)."""

    def notify_now(self, kind: str, body: Any = None) -> None:
        raise AssertionError("no item was sent: nothing to acknowledge")


async def run(n: int, side: str) -> None:
    acks = _Acks(_Pipe())  # type: ignore[arg-type]
    hooks: list[wf.Hooks] = {"none": [], "never sent": [acks], "sent to": [acks, _Ends(acks)]}[side]
    async with wf.Engine() as engine:
        job = await engine.start(chain(), {HEAD: list(range(n))}, hooks=hooks)
        result = await job.wait()
    if result.status is not wf.JobStatus.COMPLETED or result.stats.slots[TAIL].processed != n:
        raise RuntimeError(f"benchmark job ended {result.status.value}: {result.error}")


def cpu_items_per_s(n: int, side: str) -> float:
    gc.collect()
    start = time.process_time()
    asyncio.run(run(n, side))
    return n / (time.process_time() - start)


SIDES = ("none", "never sent", "sent to")


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 50_000
    rounds = int(argv[1]) if len(argv) > 1 else 7
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    for rnd in range(rounds):
        order = list(SIDES) if rnd % 2 == 0 else list(reversed(SIDES))
        for side in order:
            rates[side].append(cpu_items_per_s(n, side))
    base = statistics.median(rates["none"])
    print(f"chain, {n:,} items, CPU time, median of {rounds} interleaved rounds:")
    for side in SIDES:
        m = statistics.median(rates[side])
        each = ", ".join(f"{r / b:.3f}" for r, b in zip(rates[side], rates["none"], strict=True))
        print(f"  {side:>10}: {m:,.0f} items/s, ratio to no hook {m / base:.3f} (per round: {each})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
