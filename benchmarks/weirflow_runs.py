"""The weirflow side of each measurement. Every function builds its flow and engine
before starting the clock and checks afterwards that every item reached the sink."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import weirflow as wf

from .flows import STAGES, NotifySink, chain, fanout

HEAD = "r0.inp"
TAIL = f"r{STAGES - 1}.inp"


def _check(result: wf.JobResult, slot: str, n: int) -> None:
    if result.status is not wf.JobStatus.COMPLETED:
        raise RuntimeError(f"benchmark job ended {result.status.value}: {result.error}")
    processed = result.stats.slots[slot].processed
    if processed != n or result.dead_letters:
        raise RuntimeError(
            f"{slot}: {processed} of {n} items processed, {len(result.dead_letters)} dead letters"
        )


async def chain_seconds(n: int, threaded: bool = False) -> float:
    """Start a job with ``n`` items on ``r0.inp``; seconds from ``start`` to ``wait`` returning."""
    flow = chain(threaded=threaded)
    items = list(range(n))
    async with wf.Engine() as engine:
        t0 = time.perf_counter()
        job = await engine.start(flow, {HEAD: items})
        result = await job.wait()
        dt = time.perf_counter() - t0
    _check(result, TAIL, n)
    return dt


async def fanout_seconds(n: int) -> float:
    """``n`` items into ``src``; each goes to four branches and meets itself again at ``join``."""
    flow = fanout()
    items = list(range(n))
    async with wf.Engine() as engine:
        t0 = time.perf_counter()
        job = await engine.start(flow, {"src.inp": items})
        result = await job.wait()
        dt = time.perf_counter() - t0
    _check(result, "sink.inp", n)
    return dt


async def chain_latencies(n: int, warmup: int) -> list[float]:
    """Send one item at a time into an idle ``keep_open`` job; seconds until the sink has it.

    The sink resolves a future that this coroutine awaits, so no sleep or polling is
    involved: the figure is the engine's own hop cost plus one loop wake-up per hop.
    """
    loop = asyncio.get_running_loop()
    box: list[asyncio.Future[Any]] = []

    def notify(item: Any) -> None:
        box[0].set_result(item)

    flow = chain(sink=NotifySink(notify=notify))
    out: list[float] = []
    async with wf.Engine() as engine:
        job = await engine.start(flow, keep_open=True)
        for i in range(warmup + n):
            box[:] = [loop.create_future()]
            t0 = time.perf_counter()
            await job.send(HEAD, i)
            await box[0]
            dt = time.perf_counter() - t0
            if i >= warmup:
                out.append(dt)
        await job.close_input()
        result = await job.wait()
    _check(result, TAIL, warmup + n)
    return out


async def fed_chain(n: int) -> wf.JobResult:
    """Feed ``n`` items lazily (``send`` in a loop, nothing materialised) through the chain."""
    flow = chain()
    async with wf.Engine() as engine:
        job = await engine.start(flow, keep_open=True)
        for i in range(n):
            await job.send(HEAD, i)
        await job.close_input()
        result = await job.wait()
    _check(result, TAIL, n)
    return result
