"""What one batch of step rows costs PostgreSQL: the statement ``record_steps`` sends, with
its rows read as ``jsonb`` (as the store does) or as ``json`` (as it did before), and with or
without the ``wf_steps -> wf_jobs`` foreign key (gone since migration 0014; added back to compare),
interleaved on one throw-away server.

``python -m benchmarks.durable_step_rows [--jobs N] [--rounds R]``

Per variant a fresh database with N running jobs; each round writes 3 new step rows for
each of them (N x 3 rows, one statement: ``PostgresStore.record_steps``), variants in
turn. Reported: the median and the minimum milliseconds per batch (round trip included).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import psycopg
from tests.durable.pgserver import started_server

from weirflow.durable import JobSpec, StepRecord, open_store, postgres_admin

JSONB = postgres_admin._RECORD_STEPS
JSON = JSONB.replace("jsonb_array_elements(%s::jsonb)", "json_array_elements(%s::json)")
# (the foreign key wf_steps -> wf_jobs: gone since migration 0014, added back to compare)
VARIANTS = {
    "jsonb, no foreign key (now)": (JSONB, False),
    "jsonb, foreign key (before 0014)": (JSONB, True),
    "json, foreign key (before)": (JSON, True),
}


async def main_async(n: int, rounds: int) -> dict[str, list[float]]:
    pg = started_server()
    stores: dict[str, tuple[Any, list[Any]]] = {}
    try:
        for name, (_, fk) in VARIANTS.items():
            url = pg.new_database()
            store = open_store(url)
            await store.open()
            if fk:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(
                        "ALTER TABLE wf_steps ADD FOREIGN KEY (job_id)"
                        " REFERENCES wf_jobs (id) ON DELETE CASCADE"
                    )
            await store.submit_many([JobSpec(flow="f", inputs={"a.input": [i]}) for i in range(n)])
            jobs = (await store.claim("default", "w", limit=n, lease_s=3600)).jobs
            stores[name] = (store, jobs)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for seq in range(rounds):
            for name, (sql, _) in VARIANTS.items():
                store, jobs = stores[name]
                now = time.time()
                rows = [
                    StepRecord(
                        job_id=j.id,
                        routine=f"s{r}",
                        seq=seq,
                        status="completed",
                        attempt=1,
                        run=j.runs,
                        progress=100.0,
                        started_at=now,
                        completed_at=now,
                        worker="w",
                    )
                    for j in jobs
                    for r in range(3)
                ]
                postgres_admin._RECORD_STEPS = sql
                t0 = time.perf_counter()
                refused = await store.record_steps(rows)
                times[name].append(time.perf_counter() - t0)
                assert not refused
        return times
    finally:
        postgres_admin._RECORD_STEPS = JSONB
        for store, _ in stores.values():
            await store.close()
        pg.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    times = asyncio.run(main_async(args.jobs, args.rounds))
    print(f"| {args.jobs * 3} step rows, one statement | median ms | min ms |\n|---|---:|---:|")
    for name, v in times.items():
        print(f"| {name} | {statistics.median(v) * 1e3:.1f} | {min(v) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
