"""Single submits on PostgreSQL for two source trees in alternating rounds: jobs/s, and CPU
per job of the submitting process and of the server.

``python -m benchmarks.submit_cpu --trees BEFORE,AFTER [--jobs N] [--rounds R]``

Each tree is a directory holding ``src/weirflow`` (``git archive <commit> src | tar -x -C
DIR``). One throw-away PostgreSQL server serves every round; per round and tree: a fresh
database, then a process of that tree (``PYTHONPATH``) submits N no-op jobs with
``engine.submit`` from 16 coroutines, as ``benchmarks.durable_vs``'s ``weirflow_submit``
does (one warm-up submit first, not timed). Reported per round: jobs/s (wall), the
process's CPU per job (``time.process_time``) and the server's
(``worker_fleet_cpu.server_cpu_s``). The order of the trees flips every round; read the
medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBMITTERS = 16


async def child(url: str, n: int) -> dict[str, float]:
    import weirflow as wf

    from .durable_vs import noop

    engine = wf.Engine(store=url)
    engine.register(noop())
    async with engine:
        await engine.submit("noop", {"n.input": [0]})  # open the pool, warm up
        counter = iter(range(n))

        async def submitter() -> None:
            for i in counter:
                await engine.submit("noop", {"n.input": [i]})

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rate": n / wall, "cpu_us": cpu / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", help="comma-separated directories with src/weirflow")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.jobs))))
        return
    from tests.durable.pgserver import started_server

    from .worker_fleet_cpu import server_cpu_s

    trees = [Path(t).resolve() for t in args.trees.split(",")]
    rows: dict[Path, list[dict[str, float]]] = {t: [] for t in trees}
    pg = started_server()
    try:
        for r in range(args.rounds):
            for tree in trees if r % 2 == 0 else trees[::-1]:
                url = pg.new_database()
                env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{ROOT}"}
                s0 = server_cpu_s(pg)
                done = subprocess.run(
                    [sys.executable, "-m", "benchmarks.submit_cpu", "--child", url, "--jobs", str(args.jobs)],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=600,
                )
                row = json.loads(done.stdout.strip().splitlines()[-1])
                # (the child's start-up and warm-up included: a few ms of the server's CPU)
                row["server_us"] = (server_cpu_s(pg) - s0) / args.jobs * 1e6
                rows[tree].append(row)
                print(
                    f"round {r + 1} {tree.name}: {row['rate']:,.0f} jobs/s, {row['cpu_us']:.0f} µs CPU/job,"
                    f" server {row['server_us']:.0f} µs CPU/job",
                    flush=True,
                )
    finally:
        pg.destroy()
    for tree, got in rows.items():
        med = {k: statistics.median(x[k] for x in got) for k in got[0]}
        print(
            f"{tree.name}: median {med['rate']:,.0f} jobs/s, {med['cpu_us']:.0f} µs CPU/job,"
            f" server {med['server_us']:.0f} µs CPU/job"
        )


if __name__ == "__main__":
    main()
