"""CPU time per job of one in-process durable worker (what a worker costs, less noisy than
wall time on a shared machine).

``python -m benchmarks.worker_cpu [--backend postgres|sqlite|redis] [--flow noop|steps3] [--jobs N]
[--rounds R] [--no-lane]``

Per round: a fresh store (a new database on a throw-away PostgreSQL server, a new logical
database on a throw-away ``redis-server`` with ``appendonly yes``, or a SQLite file), N jobs
of the flow submitted with ``submit_many`` (not timed), then one ``Worker``
(``concurrency=64``, durable journal and step rows on, as ``weirflow worker`` runs it)
in this process until every job is completed. Reported per round: jobs/s (wall),
``time.process_time()`` per job, which counts this process only (SQLite's work is in it),
and on PostgreSQL and Redis the server's CPU per job (``worker_fleet_cpu.server_cpu_s``;
``redis-server``'s own) beside it. ``--no-lane`` turns the worker's lane for simple jobs
off (``Worker.simple_lane``): every job then gets a runtime ``Job``. Compare two trees by
running it with ``PYTHONPATH=<tree>/src``, alternating, and reading the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from tests.durable.pgserver import started_server
from tests.redisserver import started_server as started_redis

import weirflow as wf
from weirflow.durable.worker import Worker

from .durable_vs import noop, steps3
from .worker_fleet_cpu import server_cpu_s


async def one_round(
    url: str, n: int, flow: wf.Flow, server_cpu: Callable[[], float] | None = None, *, lane: bool = True
) -> tuple[float, float, float]:
    """(jobs per wall second, CPU µs per job, the server's CPU µs per job (``server_cpu()``:
    its CPU seconds so far) or 0 without one)."""
    slot = next(iter(flow.routines)) + ".input"
    engine = wf.Engine(store=url)
    engine.register(flow)
    async with engine:
        store = engine.store
        assert store is not None
        for start in range(0, n, 1000):
            await engine.submit_many([(flow.name, {slot: [i]}) for i in range(start, min(n, start + 1000))])
        t0, c0 = time.perf_counter(), time.process_time()
        s0 = server_cpu() if server_cpu is not None else 0.0
        worker = Worker(store, [flow], concurrency=64, worker_id="bench")
        worker.simple_lane = lane
        async with worker as w:
            # the worker's own count of its outcomes, not the store's: a count of the events
            # at every report was most of the server's CPU per job measured here before
            while w.completed + w.failed < n:
                await w.wait_reports(w.reports)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        server = server_cpu() - s0 if server_cpu is not None else 0.0
        assert (await store.finished_counts("default", 0))[1] >= n
        done = await store.list_jobs(status="completed", limit=n + 1)
        assert len(done) == n, len(done)
    return n / wall, cpu / n * 1e6, server / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["postgres", "sqlite", "redis"], default="postgres")
    parser.add_argument("--flow", choices=["noop", "steps3"], default="noop")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-lane", action="store_true", help="a runtime Job for every job")
    args = parser.parse_args()
    flow = noop() if args.flow == "noop" else steps3()
    tmp = Path(tempfile.mkdtemp(prefix="weirflow-wcpu-"))
    pg = started_server() if args.backend == "postgres" else None
    redis = started_redis(appendonly=True, appendfsync="everysec") if args.backend == "redis" else None
    server_cpu: Callable[[], float] | None = None
    if pg is not None:
        server_cpu = functools.partial(server_cpu_s, pg)
    elif redis is not None:
        proc = psutil.Process(redis.pid)
        server_cpu = lambda: sum(proc.cpu_times()[:2])  # noqa: E731
    rates, cpus, servers = [], [], []
    try:
        for r in range(args.rounds):
            if pg is not None:
                url = pg.new_database()
            elif redis is not None:
                url = redis.new_database()
            else:
                url = f"sqlite:///{tmp / f'r{r}.db'}"
            rate, cpu, server = asyncio.run(
                one_round(url, args.jobs, flow, server_cpu, lane=not args.no_lane)
            )
            rates.append(rate)
            cpus.append(cpu)
            servers.append(server)
            print(
                f"round {r + 1}: {rate:,.0f} jobs/s, {cpu:,.0f} µs CPU/job, server {server:,.0f} µs CPU/job",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if pg is not None:
            pg.destroy()
        if redis is not None:
            redis.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{args.backend} {args.flow} {args.jobs} jobs x {args.rounds}: median {statistics.median(rates):,.0f}"
        f" jobs/s, {statistics.median(cpus):,.0f} µs CPU/job (min {min(cpus):,.0f}),"
        f" server {statistics.median(servers):,.0f} µs CPU/job"
    )


if __name__ == "__main__":
    main()
