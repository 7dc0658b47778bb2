"""What a worker's store calls cost the PostgreSQL server per no-op job, on the schema now
and on the schema before migrations 0014/0015 (put back by hand), interleaved on one
throw-away server.

``python -m benchmarks.durable_schema_cost [--jobs N] [--rounds R]``

Per round and schema: a fresh database, N no-op jobs submitted with ``submit_many`` (not
counted), then the store calls a worker makes for them, without an engine: claims of 64,
one completed step row each (``record_steps``) and the completion batch. Reported: the
server's CPU per job over those calls (``worker_fleet_cpu.server_cpu_s``: the postmaster,
its reaped backends and its live children) and the jobs/s of the loop. The schemas:

- **now**: no foreign keys from ``wf_steps``/``wf_journal``/``wf_events`` to ``wf_jobs``
  (a statement trigger deletes a deleted job's rows), the worker index partial (running
  jobs), the finished index partial (finished jobs);
- **before 0014/0015**: those foreign keys (``ON DELETE CASCADE``) and the two indexes as
  they were (``(worker_id, status)``, ``(status, finished_at)``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import psycopg
from tests.durable.pgserver import PgServer, started_server

from weirflow.durable import JobSpec, StepRecord, open_store

from .worker_fleet_cpu import server_cpu_s

BEFORE = [
    "DROP TRIGGER wf_jobs_cascade ON wf_jobs",
    *(
        f"ALTER TABLE {t} ADD FOREIGN KEY (job_id) REFERENCES wf_jobs (id) ON DELETE CASCADE"
        for t in ("wf_steps", "wf_journal", "wf_events")
    ),
    "DROP INDEX wf_jobs_worker",
    "CREATE INDEX wf_jobs_worker ON wf_jobs (worker_id, status)",
    "DROP INDEX wf_jobs_finished",
    "CREATE INDEX wf_jobs_finished ON wf_jobs (status, finished_at)",
]
SCHEMAS = {"now": [], "before 0014/0015": BEFORE}


async def one_round(pg: PgServer, n: int, changes: list[str]) -> tuple[float, float]:
    """(server µs CPU per job, jobs/s)."""
    url = pg.new_database()
    store = open_store(url)
    await store.open()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for sql in changes:
                conn.execute(sql)
        for start in range(0, n, 1000):
            await store.submit_many(
                [JobSpec("noop", {"n.input": [1]}, max_attempts=1)] * min(1000, n - start)
            )
        cpu0, t0 = server_cpu_s(pg), time.perf_counter()
        done = 0
        while done < n:
            claim = await store.claim("default", "w", limit=64, lease_s=30)
            await store.record_steps([StepRecord(j.id, "n", 1, "completed", run=j.token) for j in claim.jobs])
            await store.complete("w", [(j.id, j.token, {"n.output": [1]}) for j in claim.jobs])
            done += len(claim.jobs)
        wall = time.perf_counter() - t0
        return (server_cpu_s(pg) - cpu0) / n * 1e6, n / wall
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    pg = started_server()
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in SCHEMAS}
    try:
        for r in range(args.rounds):
            names = list(SCHEMAS) if r % 2 == 0 else list(SCHEMAS)[::-1]
            for name in names:
                got[name].append(asyncio.run(one_round(pg, args.jobs, SCHEMAS[name])))
                print(f"round {r + 1} {name}: {got[name][-1][0]:,.0f} µs/job, {got[name][-1][1]:,.0f} jobs/s")
    finally:
        pg.destroy()
    print(f"\n| schema ({args.jobs:,} jobs, {args.rounds} rounds) | server µs CPU per job | jobs/s |")
    print("|---|---:|---:|")
    for name, rows in got.items():
        cpu = statistics.median(x[0] for x in rows)
        rate = statistics.median(x[1] for x in rows)
        print(f"| {name} | {cpu:,.0f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
