"""Steady-state cost per job of one worker process on PostgreSQL, start-up excluded:
instructions (callgrind) or CPU time per job, and the server's CPU per job, for source trees
side by side.

``python -m benchmarks.worker_instr --trees A,B [--jobs SMALL,LARGE] [--rounds R] [--cpu]``

Each tree is a directory holding ``src/weirflow`` (``git archive <commit> src | tar -x -C
DIR``). One throw-away PostgreSQL server serves every run; per run: a fresh database made
by the tree's own migrations, N no-op jobs (``benchmarks.durable_vs.noop``) submitted from
this process (so the submits are not in the worker's count), then one worker process of
that tree (``PYTHONPATH``) running a ``Worker`` (``concurrency=64``, durable journal and
step rows on, as ``weirflow worker`` runs it) until it has completed all N. Under
``valgrind --tool=callgrind`` by default (its total instruction count: deterministic, the
machine's load does not move it), or with ``--cpu`` the process's CPU time. Each tree runs
at two sizes; the difference divided by the difference in jobs is the cost of one job,
the process's start-up, imports and connections cancelling out. The server's CPU per job
(``worker_fleet_cpu.server_cpu_s``) is that difference too. The order of the trees flips
every round.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.durable.pgserver import PgServer, started_server

from .worker_fleet_cpu import MIGRATE, ROOT, server_cpu_s

SUBMIT = (
    "import asyncio, sys\nfrom weirflow.durable import JobSpec, open_store\n"
    "async def submit():\n    store = open_store(sys.argv[1])\n    await store.open()\n"
    "    spec = JobSpec(flow='noop', inputs={'n.input': [1]}, max_attempts=1)\n"
    "    n = int(sys.argv[2])\n"
    "    for start in range(0, n, 1000):\n"
    "        await store.submit_many([spec] * min(1000, n - start))\n"
    "    await store.close()\n"
    "asyncio.run(submit())"
)
WORKER = (
    "import asyncio, sys\nfrom weirflow.durable.worker import Worker\n"
    "from benchmarks.durable_vs import noop\n"
    "async def work():\n    n = int(sys.argv[2])\n"
    "    async with Worker(sys.argv[1], [noop()], concurrency=64, worker_id='bench') as w:\n"
    "        while w.completed + w.failed < n:\n            await w.wait_reports(w.reports)\n"
    "    assert w.completed == n, (w.completed, n)\n"
    "asyncio.run(work())"
)


def one_run(pg: PgServer, tree: Path, n: int, tmp: Path, *, callgrind: bool) -> tuple[float, float]:
    """(instructions or CPU seconds of the worker process, server CPU seconds) for n jobs."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{ROOT}", "PYTHONHASHSEED": "0"}
    url = pg.new_database()
    subprocess.run([sys.executable, "-c", MIGRATE, url], check=True, env=env)
    subprocess.run([sys.executable, "-c", SUBMIT, url, str(n)], check=True, env=env)
    out = tmp / f"cg.{time.monotonic_ns()}"
    cmd = [sys.executable, "-c", WORKER, url, str(n)]
    if callgrind:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server0 = server_cpu_s(pg)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = server_cpu_s(pg) - server0
    if not callgrind:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, server
    totals = next(line for line in out.read_text().splitlines() if line.startswith("totals:"))
    out.unlink()
    return float(totals.split()[1]), server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", required=True, help="comma-separated directories with src/weirflow")
    parser.add_argument("--jobs", default="1000,3000", help="the two sizes: SMALL,LARGE")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cpu", action="store_true", help="CPU time instead of callgrind's instructions")
    args = parser.parse_args()
    small, large = (int(x) for x in args.jobs.split(","))
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    unit = "µs CPU" if args.cpu else "instructions"
    scale = 1e6 if args.cpu else 1.0
    tmp = Path(tempfile.mkdtemp(prefix="weirflow-winstr-"))
    pg = started_server()
    got: dict[Path, list[tuple[float, float]]] = {t: [] for t in trees}
    try:
        for r in range(args.rounds):
            for tree in trees if r % 2 == 0 else trees[::-1]:
                w0, s0 = one_run(pg, tree, small, tmp, callgrind=not args.cpu)
                w1, s1 = one_run(pg, tree, large, tmp, callgrind=not args.cpu)
                per = ((w1 - w0) / (large - small) * scale, (s1 - s0) / (large - small) * 1e6)
                got[tree].append(per)
                print(
                    f"round {r + 1} {tree}: worker {per[0]:,.0f} {unit}/job, server {per[1]:,.0f} µs CPU/job",
                    flush=True,
                )
    finally:
        pg.destroy()
    print(f"\n| tree | worker {unit} per job | server µs CPU per job |\n|---|---:|---:|")
    for tree, rows in got.items():
        w = statistics.median(x[0] for x in rows)
        s = statistics.median(x[1] for x in rows)
        print(f"| {tree} | {w:,.0f} | {s:,.0f} |")


if __name__ == "__main__":
    main()
