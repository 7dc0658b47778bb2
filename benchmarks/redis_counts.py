"""The Redis store's counts and filtered lists read from the indexes the scripts keep, against
reading every job (what ``queue_counts`` and ``list_jobs`` did before), and what keeping the
indexes costs the hot path (submit, claim, complete), in one run.

``python -m benchmarks.redis_counts [--jobs N] [--rounds R]``

One throw-away ``redis-server`` (loopback, no persistence). Reads: a store of N jobs (a
tenth failed, a tenth completed, the rest queued); each round times, interleaved, the
indexed ``queue_counts``, ``list_jobs(status="failed")`` and ``list_jobs(offset=N-50)``
against the full read (every job, a page of 500 at a time, counted or filtered in Python).
Hot path: each round submits 2,000 jobs (batches of 500), claims them 50 at a time and
completes each batch, once with the scripts as they are and once with their ``track``
(the index upkeep) made a no-op, the order alternating. Reported: medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.redisserver import started_server

from weirflow.durable import JobSpec, redis_lua
from weirflow.durable.models import counts_of
from weirflow.durable.redis_base import SCRIPTS
from weirflow.durable.redis_store import RedisStore

PAGE = 500
NO_TRACK = "local function track(id, q, flow, seq, old, new, run_at, dstalls)\n  do return end\n"
NO_TRACK_MANY = "local function track_many(q, moved, old, new)\n  do return end\n"


async def _all(store: RedisStore) -> list[Any]:
    jobs: list[Any] = []
    start = 0
    while ids := await store._do("zrange", store.key("jobs"), start, start + PAGE - 1):
        start += PAGE
        jobs.extend(await store._jobs([i.decode() for i in ids]))
    return jobs


async def _timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    await fn()
    return time.perf_counter() - t


async def _fill(store: RedisStore, n: int) -> None:
    for i in range(0, n, 1000):
        await store.submit_many([JobSpec(flow="f", inputs={}) for _ in range(min(1000, n - i))])
    for outcome in ("failed", "completed"):
        for job in (await store.claim("default", "w", limit=n // 10, lease_s=600)).jobs:
            if outcome == "failed":
                await store.fail(job.id, "w", job.runs, "x", retry=False)
            else:
                await store.complete("w", [(job.id, job.runs, {})])


async def _hot(store: RedisStore) -> float:
    t = time.perf_counter()
    for _ in range(4):
        await store.submit_many([JobSpec(flow="f", inputs={}, queue="hot") for _ in range(500)])
    while jobs := (await store.claim("hot", "w", limit=50, lease_s=600)).jobs:
        await store.complete("w", [(j.id, j.runs, {}) for j in jobs])
    return time.perf_counter() - t


def _without_track(store: RedisStore) -> None:
    """The store's scripts with ``track`` a no-op (the hot path without the index upkeep)."""
    common = redis_lua.COMMON.replace(
        "local function track(id, q, flow, seq, old, new, run_at, dstalls)\n", NO_TRACK
    ).replace("local function track_many(q, moved, old, new)\n", NO_TRACK_MANY)
    assert common.count("do return end") == 2
    client = store._redis
    assert client is not None
    store._scripts = {name: client.register_script(common + getattr(redis_lua, name)) for name in SCRIPTS}


async def main(jobs: int, rounds: int) -> None:
    server = started_server()
    try:
        store = RedisStore(server.url(1), timeout_s=120)
        await store.open()
        await _fill(store, jobs)
        await store.queue_counts()
        reads: dict[str, list[float]] = {k: [] for k in ("counts", "failed", "offset")}
        scans: dict[str, list[float]] = {k: [] for k in reads}
        for r in range(rounds):
            for indexed_first in (True, False) if r % 2 == 0 else (False, True):
                if indexed_first:
                    reads["counts"].append(await _timed(store.queue_counts))
                    reads["failed"].append(await _timed(lambda: store.list_jobs(status="failed")))
                    reads["offset"].append(await _timed(lambda: store.list_jobs(offset=jobs - 50)))
                else:
                    scans["counts"].append(await _timed(lambda: _scan_counts(store)))
                    scans["failed"].append(await _timed(lambda: _scan_failed(store)))
                    scans["offset"].append(await _timed(lambda: _all(store)))
        plain = RedisStore(server.url(2), timeout_s=120)
        await plain.open()
        _without_track(plain)
        tracked = RedisStore(server.url(3), timeout_s=120)
        await tracked.open()
        hot: dict[str, list[float]] = {"with indexes": [], "without": []}
        for r in range(rounds):
            order = [("with indexes", tracked), ("without", plain)]
            for name, s in order if r % 2 == 0 else reversed(order):
                hot[name].append(await _hot(s))
        print(f"redis_counts: {jobs} jobs, {rounds} rounds, medians (s)")
        for k in reads:
            a, b = statistics.median(reads[k]), statistics.median(scans[k])
            print(f"  {k:7s} indexed {a:.4f}  full read {b:.4f}  full/indexed {b / a:.0f} x")
        a, b = statistics.median(hot["with indexes"]), statistics.median(hot["without"])
        print(f"  hot path (2,000 jobs) with indexes {a:.3f}  without {b:.3f}  with/without {a / b:.2f} x")
        for s in (store, plain, tracked):
            await s.close()
    finally:
        server.destroy()


async def _scan_counts(store: RedisStore) -> None:
    counts_of(await _all(store), store.clock())


async def _scan_failed(store: RedisStore) -> None:
    [j for j in await _all(store) if j.status == "failed"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.rounds))
