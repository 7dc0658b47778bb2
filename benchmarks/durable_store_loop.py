"""The store alone, without an engine: no-op jobs/s of a loop that claims 64 jobs,
appends three journal records and a step row for each and completes them, on the
Redis store (AOF ``everysec``) and on the PostgreSQL store, in one run.

``python -m benchmarks.durable_store_loop [--jobs N] [--rounds R]``

What a worker's store calls cost per job, apart from running the job; ``submit`` is
``submit_many`` in batches of 1,000. Reported per round, then the median of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from tests.durable.pgserver import started_server as started_pg
from tests.redisserver import started_server as started_redis

from weirflow.durable import JobSpec, StepRecord, open_store


async def loop(url: str, n: int) -> tuple[float, float]:
    store = open_store(url)
    await store.open()
    try:
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            await store.submit_many(
                [
                    JobSpec("noop", {"n.input": [i]}, max_attempts=1)
                    for i in range(start, min(n, start + 1000))
                ]
            )
        submitted = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        done = 0
        while done < n:
            claim = await store.claim("default", "w", limit=64, lease_s=30)
            leases = {j.id: j.token for j in claim.jobs}
            await store.append_journal([(j.id, '{"t":"enq","n":1}') for j in claim.jobs] * 3, tokens=leases)
            await store.record_steps([StepRecord(j.id, "n", 1, "completed", run=j.token) for j in claim.jobs])
            await store.complete("w", [(j.id, j.token, {"n.output": [1]}) for j in claim.jobs])
            done += len(claim.jobs)
        return submitted, n / (time.perf_counter() - t0)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis, pg = started_redis(appendonly=True, appendfsync="everysec"), started_pg()
    rows: dict[str, list[float]] = {}
    try:
        for r in range(args.rounds):
            sides = [("redis", redis.new_database), ("postgres", pg.new_database)]
            for name, new_db in sides if r % 2 == 0 else sides[::-1]:
                sub, proc = asyncio.run(loop(new_db(), args.jobs))
                rows.setdefault(f"{name} submit", []).append(sub)
                rows.setdefault(f"{name} claim+journal+steps+complete", []).append(proc)
    finally:
        redis.destroy()
        pg.destroy()
    print("| jobs/s | " + " | ".join(f"round {i + 1}" for i in range(args.rounds)) + " | median |")
    print("|---|" + "---:|" * (args.rounds + 1))
    for k, v in rows.items():
        print(f"| {k} | " + " | ".join(f"{x:,.0f}" for x in v) + f" | {statistics.median(v):,.0f} |")


if __name__ == "__main__":
    main()
