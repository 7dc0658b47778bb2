"""No-op durable jobs per second on the Redis store, against the PostgreSQL store and
against arq and dramatiq on the same Redis, in one run.

``python -m benchmarks.durable_redis [--jobs N] [--rounds R] [--workers W] [--json PATH]``

Needs ``arq``, ``dramatiq[redis]`` and ``redis-server``, which are not weirflow
dependencies (arq pins an older redis-py): run it from a benchmark virtualenv
(``python -m venv /tmp/rbench && /tmp/rbench/bin/pip install -e . arq 'dramatiq[redis]'``).

One ``redis-server`` (loopback, ``appendonly yes``, ``appendfsync everysec``: the
setting docs/workers.md asks of a job store, for every side alike) and one
throw-away PostgreSQL server serve every measurement. Every round runs each side
once, on a fresh database (weirflow) or a flushed Redis (arq, dramatiq), the order
rotating between rounds. Each side: N no-op jobs submitted from this process
(weirflow: ``submit_many`` in batches of 1,000; arq: ``enqueue_job`` 500 at a time;
dramatiq: ``actor.send`` one by one), then W worker processes started and timed from
the first job's start to the last job's end as the store's events (weirflow) or the
jobs themselves (arq, dramatiq) record them, so start-up is not counted. weirflow:
``weirflow worker --concurrency 64``; arq: ``max_jobs = 64``; dramatiq: ``-p W -t 16``.
Reported: the median of the rounds and the ratios of the medians, and the CPU time
``redis-server`` spent per job on each side on Redis (submits and processing, read from
the server's process: ``psutil``, a dependency of weirflow).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from tests.durable.pgserver import started_server as started_pg
from tests.redisserver import started_server as started_redis

from weirflow.durable import JobSpec, open_store

from . import durable_arq, durable_jobs, durable_vs

BATCH = 1000
#: the suffix of a side's redis-server CPU time per job (submit and processing), in µs
CPU = "_redis_server_cpu_us_per_job"


async def weirflow_side(url: str, n: int, workers: int, tmp: Path) -> tuple[float, float]:
    """(submitted/s, processed/s) of ``n`` no-op jobs on the store at ``url``."""
    store = open_store(url)
    await store.open()
    try:
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            specs = [
                JobSpec("noop", {"n.input": [i]}, max_attempts=1) for i in range(start, min(n, start + BATCH))
            ]
            await store.submit_many(specs)
        submitted = n / (time.perf_counter() - t0)
        processed = await durable_jobs.process_all(store, url, n, workers, tmp)
    finally:
        await store.close()
    return submitted, processed


async def dramatiq_side(port: int, n: int, workers: int, tmp: Path) -> tuple[float, float]:
    submitted = durable_vs.dramatiq_submit(port, n)
    return submitted, await durable_vs.dramatiq_process(port, n, workers, tmp)


async def one_round(redis: Any, pg: Any, n: int, workers: int, tmp: Path, turn: int) -> dict[str, float]:
    row: dict[str, float] = {}

    server = psutil.Process(redis.pid)

    def cpu_s() -> float:
        times = server.cpu_times()
        return float(times.user + times.system)

    async def on_redis() -> None:
        start = cpu_s()
        row["redis_store_submit"], row["redis_store_process"] = await weirflow_side(
            redis.new_database(), n, workers, tmp
        )
        row[f"redis_store{CPU}"] = (cpu_s() - start) / n * 1e6

    async def on_postgres() -> None:
        row["postgres_store_submit"], row["postgres_store_process"] = await weirflow_side(
            pg.new_database(), n, workers, tmp
        )

    async def arq() -> None:
        start = cpu_s()
        row["arq_submit"], row["arq_process"] = await durable_arq._measure(redis.port, n, workers, tmp)
        row[f"arq{CPU}"] = (cpu_s() - start) / n * 1e6

    async def dramatiq() -> None:
        start = cpu_s()
        row["dramatiq_submit"], row["dramatiq_process"] = await dramatiq_side(redis.port, n, workers, tmp)
        row[f"dramatiq{CPU}"] = (cpu_s() - start) / n * 1e6

    sides = [on_redis, on_postgres, arq, dramatiq]
    for side in sides[turn % 4 :] + sides[: turn % 4]:
        await side()
    print(json.dumps({k: round(v) for k, v in row.items()}), file=sys.stderr, flush=True)
    return row


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="weirflow-redis-bench-"))
    redis = started_redis(appendonly=True, appendfsync="everysec")
    pg = started_pg()
    os.environ[durable_vs.PORT_ENV] = str(redis.port)
    try:
        rounds = [await one_round(redis, pg, args.jobs, args.workers, tmp, r) for r in range(args.rounds)]
    finally:
        pg.destroy()
        redis.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "jobs": args.jobs,
        "workers": args.workers,
        "rounds": rounds,
        "median": med,
        "ratios": {
            "redis store / dramatiq (process)": med["redis_store_process"] / med["dramatiq_process"],
            "redis store / arq (process)": med["redis_store_process"] / med["arq_process"],
            "redis store / postgres store (process)": med["redis_store_process"]
            / med["postgres_store_process"],
            "redis store / dramatiq (submit)": med["redis_store_submit"] / med["dramatiq_submit"],
            "redis store / postgres store (submit)": med["redis_store_submit"] / med["postgres_store_submit"],
            "redis-server CPU per job: redis store / dramatiq": med[f"redis_store{CPU}"]
            / med[f"dramatiq{CPU}"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print("| measurement | median |\n|---|---:|")
    for k, v in result["median"].items():
        print(f"| {k} | {v:,.0f} |" if k.endswith(CPU) else f"| {k} (jobs/s) | {v:,.0f} |")
    print("\n| ratio | value |\n|---|---:|")
    for k, v in result["ratios"].items():
        print(f"| {k} | {v:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
