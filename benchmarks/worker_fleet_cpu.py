"""Four ``weirflow worker`` processes on PostgreSQL: jobs/s, and CPU per job of the workers
and of the PostgreSQL server, for two source trees in alternating rounds.

``python -m benchmarks.worker_fleet_cpu --trees BEFORE,AFTER [--jobs N] [--rounds R] [--workers W]``

Each tree is a directory holding ``src/weirflow`` (``git archive <commit> src | tar -x -C
DIR``). One throw-away PostgreSQL server serves every round; per round and tree: a fresh
database, N no-op jobs submitted with ``submit_many`` (not timed), then W ``weirflow
worker --concurrency 64`` processes of that tree (``PYTHONPATH``) until every job is
completed; the tree's own migrations make its database's schema. Reported per round:

- jobs/s from the first claim to the last completion (the store's events), as
  ``benchmarks.durable_jobs`` measures it;
- the workers' CPU per job (``RUSAGE_CHILDREN``), *including* their start-up: about
  0.9 s of CPU per process to import and connect, so run 20,000 jobs or more;
- the PostgreSQL server's CPU per job (the postmaster's own and its reaped backends'
  times, plus its live children, from ``/proc``).

The order of the trees flips every round. On a shared machine read the medians, and the
CPU columns (less sensitive to the load than the wall rate).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import unittest.mock
from pathlib import Path

from tests.durable.pgserver import PgServer, started_server

from weirflow.durable import JobSpec, open_store, postgres_base

from . import durable_jobs

ROOT = Path(__file__).resolve().parent.parent
MIGRATE = (
    "import asyncio, sys\nfrom weirflow.durable import open_store\n"
    "async def migrate():\n    store = open_store(sys.argv[1])\n"
    "    await store.open()\n    await store.close()\n"
    "asyncio.run(migrate())"
)


def server_cpu_s(pg: PgServer) -> float:
    """CPU seconds used so far by the server: the postmaster (with its reaped backends) and
    its live children."""
    pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    ticks = 0
    for p in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile: its time is in the postmaster's
            continue
        # utime, stime; for the postmaster also cutime, cstime (its reaped backends)
        ticks += sum(int(v) for v in fields[11 : 15 if p == pid else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


async def one_round(pg: PgServer, tree: Path, n: int, workers: int, tmp: Path) -> tuple[float, float, float]:
    """(jobs/s, worker CPU µs/job, server CPU µs/job)."""
    os.environ["PYTHONPATH"] = f"{tree / 'src'}{os.pathsep}{ROOT}"  # the workers' tree
    url = pg.new_database()
    # the tree's own migrations make the schema its workers run on (this process's store
    # then applies none: it would add this tree's newer ones)
    subprocess.run([sys.executable, "-c", MIGRATE, url], check=True)  # noqa: ASYNC221 - not timed
    store = open_store(url)
    with unittest.mock.patch.object(postgres_base, "pending", return_value=[]):
        await store.open()
    try:
        spec = JobSpec(flow="noop", inputs={"n.input": [1]}, max_attempts=1)
        for start in range(0, n, 1000):
            await store.submit_many([spec] * min(1000, n - start))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = server_cpu_s(pg)
        rate = await durable_jobs.process_all(store, url, n, workers, tmp)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server = server_cpu_s(pg) - server_before
    finally:
        await store.close()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return rate, cpu / n * 1e6, server / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", required=True, help="comma-separated directories with src/weirflow")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="weirflow-fleet-"))
    pg = started_server()
    results: dict[Path, list[tuple[float, float, float]]] = {t: [] for t in trees}
    try:
        for r in range(args.rounds):
            for tree in trees if r % 2 == 0 else trees[::-1]:
                got = asyncio.run(one_round(pg, tree, args.jobs, args.workers, tmp))
                results[tree].append(got)
                print(
                    f"round {r + 1} {tree}: {got[0]:,.0f} jobs/s, workers {got[1]:,.0f} µs CPU/job"
                    f" (with start-up), server {got[2]:,.0f} µs CPU/job",
                    flush=True,
                )
    finally:
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| tree | jobs/s | workers µs CPU/job | server µs CPU/job |\n|---|---:|---:|---:|")
    for tree, rows in results.items():
        med = [statistics.median(x[i] for x in rows) for i in range(3)]
        print(f"| {tree} | {med[0]:,.0f} | {med[1]:,.0f} | {med[2]:,.0f} |")


if __name__ == "__main__":
    main()
