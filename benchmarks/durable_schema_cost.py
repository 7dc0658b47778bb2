"""What a worker's store calls cost the PostgreSQL server per no-op job, on the schema now
on the schema before migration 0016 and on the one before migrations 0014-0016 (put back by
hand), interleaved on one throw-away server.

``python -m benchmarks.durable_schema_cost [--jobs N] [--rounds R]``

Per round and schema: a fresh database, N no-op jobs submitted with ``submit_many`` (not
counted), then the store calls a worker makes for them, without an engine: claims of 64,
one completed step row each (``record_steps``) and the completion batch. Reported: the
server's CPU per job over those calls (``worker_fleet_cpu.server_cpu_s``: the postmaster,
its reaped backends and its live children) and the jobs/s of the loop. The schemas:

- **now**: no foreign keys from ``wf_steps``/``wf_journal``/``wf_events`` to ``wf_jobs``
  (a statement trigger deletes a deleted job's rows), one index of the running jobs
  (worker, lease), the finished index partial (finished jobs), the idempotency key unique
  among the jobs that have one, no ``(queue, status)`` index: 6 index entries per job;
- **before 0016**: the (queue, idempotency_key) constraint on every row, ``(queue,
  status)``, the lease and the worker indexes of the running jobs apart: 13 entries;
- **before 0014-0016**: also those foreign keys (``ON DELETE CASCADE``) and the worker and
  finished indexes not partial (``(worker_id, status)``, ``(status, finished_at)``).
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

BEFORE_0016 = [
    "DROP INDEX wf_jobs_running",
    "DROP INDEX wf_jobs_idempotency",
    "ALTER TABLE wf_jobs ADD UNIQUE (queue, idempotency_key)",
    "CREATE INDEX wf_jobs_status ON wf_jobs (queue, status)",
    "CREATE INDEX wf_jobs_lease ON wf_jobs (lease_expires_at) WHERE status = 'running'",
    "CREATE INDEX wf_jobs_worker ON wf_jobs (worker_id) WHERE status = 'running'",
]
BEFORE = [
    *BEFORE_0016,
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
SCHEMAS = {"now": [], "before 0016": BEFORE_0016, "before 0014-0016": BEFORE}


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
