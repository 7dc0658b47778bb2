"""What numbering journal batches costs a worker's append (``append_journal(batches=...)``,
the skip of a batch the store holds already): appends/s of 64 running jobs' batches, one
row per job, with and without ``batches``, in interleaved rounds on one store of each of
SQLite, PostgreSQL and Redis (AOF ``everysec``), in one run.

``python -m benchmarks.journal_batches [--appends N] [--rounds R]``

Reported per round as the ratio with batches / without (1.0: no cost), then the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tests.durable.pgserver import started_server as started_pg
from tests.redisserver import started_server as started_redis

from weirflow.durable import JobSpec, Store, open_store

RECORD = '{"t":"enq","n":1}\n{"t":"start","n":2}\n{"t":"done","n":3}'


async def appends_per_s(store: Store, n: int, numbered: bool) -> float:
    await store.submit_many([JobSpec("noop", {}) for _ in range(64)])
    claim = await store.claim("default", "w", limit=64, lease_s=3600)
    leases = {j.id: j.token for j in claim.jobs}
    t0 = time.perf_counter()
    for k in range(1, n + 1):
        batches = dict.fromkeys(leases, k) if numbered else None
        await store.append_journal([(j, RECORD) for j in leases], tokens=leases, batches=batches)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    redis, pg = started_redis(appendonly=True, appendfsync="everysec"), started_pg()
    ratios: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            urls = {
                "sqlite": f"sqlite:///{Path(tmp) / 'b.db'}",
                "postgres": pg.new_database(),
                "redis": redis.new_database(),
            }

            async def run() -> None:
                for name, url in urls.items():
                    store = open_store(url)
                    await store.open()
                    try:
                        for r in range(args.rounds):
                            # interleaved, the side that goes first alternating
                            order = [False, True] if r % 2 == 0 else [True, False]
                            rate = {side: await appends_per_s(store, args.appends, side) for side in order}
                            ratio = rate[True] / rate[False]
                            ratios.setdefault(name, []).append(ratio)
                            print(
                                f"{name} round {r}: {rate[False]:.0f} appends/s plain,"
                                f" {rate[True]:.0f} numbered ({ratio:.2f} x)"
                            )
                    finally:
                        await store.close()

            asyncio.run(run())
    finally:
        redis.destroy()
        pg.destroy()
    for name, values in ratios.items():
        print(f"{name}: numbered / plain, median {statistics.median(values):.2f} x")


if __name__ == "__main__":
    main()
