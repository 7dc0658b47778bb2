"""Plain-asyncio equivalents of the weirflow flows: one task per stage, bounded
``asyncio.Queue``s between them, a ``None`` sentinel to end. What weirflow adds on
top (accounting, completion, error policies, hooks) is the price being measured."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .flows import CAPACITY, FAN, STAGES

END = None
DEFAULT_THREADS = min(64, (os.cpu_count() or 1) + 8)  # as wf.Engine sizes its pool


async def _stage(qin: asyncio.Queue[Any], qout: asyncio.Queue[Any] | None) -> None:
    while True:
        item = await qin.get()
        if qout is not None:
            await qout.put(item)
        if item is END:
            return


async def _sink(qin: asyncio.Queue[Any], notify: Callable[[Any], None] | None = None) -> None:
    while True:
        item = await qin.get()
        if item is END:
            return
        if notify is not None:
            notify(item)


def _chain_tasks(
    notify: Callable[[Any], None] | None = None,
) -> tuple[asyncio.Queue[Any], list[asyncio.Task[None]]]:
    qs: list[asyncio.Queue[Any]] = [asyncio.Queue(maxsize=CAPACITY) for _ in range(STAGES)]
    tasks = [asyncio.create_task(_stage(qs[i], qs[i + 1])) for i in range(STAGES - 1)]
    tasks.append(asyncio.create_task(_sink(qs[-1], notify)))
    return qs[0], tasks


async def chain_seconds(n: int) -> float:
    """Push ``n`` items through the 5-stage queue chain; seconds until the sink is done."""
    head, tasks = _chain_tasks()
    t0 = time.perf_counter()
    for i in range(n):
        await head.put(i)
    await head.put(END)
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0


async def _join(qins: list[asyncio.Queue[Any]], qout: asyncio.Queue[Any]) -> None:
    while True:
        items = [await q.get() for q in qins]
        await qout.put(items[0])
        if items[0] is END:
            return


async def _split(qin: asyncio.Queue[Any], qouts: list[asyncio.Queue[Any]]) -> None:
    while True:
        item = await qin.get()
        for q in qouts:
            await q.put(item)
        if item is END:
            return


async def fanout_seconds(n: int) -> float:
    """Push ``n`` items through src -> 4 stages -> join -> sink; seconds until done."""

    def queue() -> asyncio.Queue[Any]:
        return asyncio.Queue(maxsize=CAPACITY)

    head, sink_q = queue(), queue()
    branch_in = [queue() for _ in range(FAN)]
    branch_out = [queue() for _ in range(FAN)]
    tasks = [asyncio.create_task(_split(head, branch_in))]
    tasks += [asyncio.create_task(_stage(branch_in[i], branch_out[i])) for i in range(FAN)]
    tasks.append(asyncio.create_task(_join(branch_out, sink_q)))
    tasks.append(asyncio.create_task(_sink(sink_q)))
    t0 = time.perf_counter()
    for i in range(n):
        await head.put(i)
    await head.put(END)
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0


async def chain_latencies(n: int, warmup: int) -> list[float]:
    """Send one item at a time through the idle chain; seconds until the sink sees each."""
    loop = asyncio.get_running_loop()
    box: list[asyncio.Future[Any]] = []

    def notify(item: Any) -> None:
        box[0].set_result(item)

    head, tasks = _chain_tasks(notify)
    out: list[float] = []
    for i in range(warmup + n):
        box[:] = [loop.create_future()]
        t0 = time.perf_counter()
        await head.put(i)
        await box[0]
        dt = time.perf_counter() - t0
        if i >= warmup:
            out.append(dt)
    await head.put(END)
    await asyncio.gather(*tasks)
    return out


async def threaded_chain_seconds(n: int) -> float:
    """The 5-stage chain with every stage's work in a thread pool, as weirflow runs plain
    ``def`` handlers: each forwarder hands its item back to the loop and waits for it."""
    loop = asyncio.get_running_loop()
    qs: list[asyncio.Queue[Any]] = [asyncio.Queue(maxsize=CAPACITY) for _ in range(STAGES)]

    def forward(item: Any, qout: asyncio.Queue[Any]) -> None:
        asyncio.run_coroutine_threadsafe(qout.put(item), loop).result()

    def take(item: Any) -> None:
        pass

    async def stage(i: int, pool: ThreadPoolExecutor) -> None:
        last = i == STAGES - 1
        while True:
            item = await qs[i].get()
            if item is END:
                if not last:
                    await qs[i + 1].put(END)
                return
            if last:
                await loop.run_in_executor(pool, take, item)
            else:
                await loop.run_in_executor(pool, forward, item, qs[i + 1])

    with ThreadPoolExecutor(DEFAULT_THREADS) as pool:
        tasks = [asyncio.create_task(stage(i, pool)) for i in range(STAGES)]
        t0 = time.perf_counter()
        for i in range(n):
            await qs[0].put(i)
        await qs[0].put(END)
        await asyncio.gather(*tasks)
        return time.perf_counter() - t0
