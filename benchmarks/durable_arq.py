"""The comparison for ``benchmarks.durable_jobs --redis``: no-op jobs through ``arq`` on a
throw-away ``redis-server`` (loopback, no persistence), timed like weirflow's: from the
first job's start to the last job's end, as recorded by the jobs themselves.

``arq`` and ``redis-server`` are not weirflow dependencies: install them to compare
(``pip install arq``; ``apt-get install redis-server``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from tests.durable.pgserver import free_port

PORT_ENV = "WEIRFLOW_BENCH_REDIS_PORT"
ROOT = Path(__file__).resolve().parent.parent


async def noop(ctx: dict[str, Any], item: int) -> int:
    now = time.time()
    pipe = ctx["redis"].pipeline(transaction=False)
    pipe.setnx("bench:first", now)
    pipe.set("bench:last", now)
    pipe.incr("bench:done")
    await pipe.execute()
    return item


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings(port=int(os.environ.get(PORT_ENV, "6379")))
    max_jobs = 64
    keep_result = 60
    handle_signals = True


async def _measure(port: int, n: int, workers: int, log_dir: Path) -> tuple[float, float]:
    # arq retries the connection while redis-server starts
    redis = await create_pool(RedisSettings(port=port, conn_retries=100, conn_retry_delay=0.05))
    await redis.flushall()
    t0 = time.perf_counter()
    for start in range(0, n, 500):
        await asyncio.gather(*(redis.enqueue_job("noop", i) for i in range(start, min(n, start + 500))))
    submitted = n / (time.perf_counter() - t0)
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
            [sys.executable, "-m", "arq", "benchmarks.durable_arq.WorkerSettings"],
            cwd=ROOT,
            env={**os.environ, PORT_ENV: str(port)},
            stdout=(log_dir / f"arq-{workers}-{i}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i in range(workers)
    ]
    try:
        deadline = time.monotonic() + 600
        while int(await redis.get("bench:done") or 0) < n:  # other processes' work
            if time.monotonic() > deadline:
                raise TimeoutError("arq workers did not finish in 600 s")
            await asyncio.sleep(0.25)
        first = float(await redis.get("bench:first"))
        last = float(await redis.get("bench:last"))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
        await redis.aclose()
    return submitted, n / (last - first)


async def run(n: int, tmp: Path, workers: tuple[int, ...] = (1, 4)) -> dict[int, tuple[float, float]]:
    """``{workers: (submitted/s, processed/s)}`` for arq on a fresh redis-server."""
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)]
    server = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        return {w: await _measure(port, n, w, tmp) for w in workers}
    finally:
        server.terminate()
        server.wait(30)
