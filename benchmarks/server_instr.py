"""PostgreSQL server instructions per no-op job for the store calls a worker makes, for source
trees side by side (callgrind: deterministic, the machine's load does not move it).

``python -m benchmarks.server_instr --trees A,B [--jobs SMALL,LARGE] [--rounds R]``

Each tree is a directory holding ``src/weirflow`` (``git archive <commit> src | tar -x -C
DIR``). One throw-away PostgreSQL server runs under ``valgrind --tool=callgrind
--trace-children=yes`` (autovacuum off), so each backend writes its instruction count when
its connection ends. Per tree and size N: a fresh database made by the tree's own
migrations, N no-op jobs submitted (not counted), then, on new connections, the calls a
worker makes for them with that tree's store: claims of 64 and each batch's completion with
its one completed step row (``Store.complete(..., steps=)``). Counted: the instructions of
the backends that served those calls. The difference between the two sizes divided by the
difference in jobs is the cost of one job (connecting and the first plans cancel out). The
background processes (WAL writer, checkpointer) are not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from tests.durable.pgserver import PgServer

from .worker_fleet_cpu import ROOT

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
WORK = (
    "import asyncio, sys, time\nfrom weirflow.durable import StepRecord, open_store\n"
    "async def work():\n    store = open_store(sys.argv[1])\n    await store.open()\n"
    "    n, done = int(sys.argv[2]), 0\n"
    "    while done < n:\n"
    "        claim = await store.claim('default', 'w', limit=64, lease_s=30)\n"
    "        now = time.time()\n"
    "        steps = [StepRecord(j.id, 'n', 1, 'completed', run=j.token, started_at=now,"
    " completed_at=now, worker='w') for j in claim.jobs]\n"
    "        done_ = [(j.id, j.token, {'n.output': [1]}) for j in claim.jobs]\n"
    "        assert await store.complete('w', done_, steps=steps) == []\n"
    "        done += len(claim.jobs)\n"
    "    await store.close()\n"
    "asyncio.run(work())"
)
MIGRATE = (
    "import asyncio, sys\nfrom weirflow.durable import open_store\n"
    "async def migrate():\n    store = open_store(sys.argv[1])\n"
    "    await store.open()\n    await store.close()\n"
    "asyncio.run(migrate())"
)


def start(pg: PgServer, out: Path) -> subprocess.Popen[bytes]:
    """The server of ``pg`` (initialised) under callgrind, each process counting into ``out``."""
    pg.init()
    out.mkdir(parents=True, exist_ok=True)
    if pg.as_root:
        shutil.chown(out, "postgres", "postgres")
    postgres = str(Path(pg.pg_ctl).parent / "postgres")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        f"--callgrind-out-file={out}/cg.%p",
        postgres,
        "-D",
        str(pg.data),
        "-p",
        str(pg.port),
        "-k",
        str(pg.root),
        *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off"),
        *("-c", "full_page_writes=off", "-c", "autovacuum=off", "-c", "max_connections=50"),
    ]
    if pg.as_root:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=(out / "server.log").open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        try:
            psycopg.connect(pg.url(), connect_timeout=5).close()
            return proc
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.5)


def _counted(out: Path) -> dict[Path, int]:
    counts = {}
    for f in out.glob("cg.*"):
        for line in f.read_text().splitlines():
            if line.startswith("totals:"):
                counts[f] = int(line.split()[1])
    return counts


def one_run(pg: PgServer, out: Path, tree: Path, n: int) -> int:
    """Instructions of the backends that served the claims and completions of n jobs."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{ROOT}"}
    url = pg.new_database()
    subprocess.run([sys.executable, "-c", MIGRATE, url], check=True, env=env)
    subprocess.run([sys.executable, "-c", SUBMIT, url, str(n)], check=True, env=env)
    time.sleep(1)  # (the backends of those connections have written their counts)
    before = set(_counted(out))
    subprocess.run([sys.executable, "-c", WORK, url, str(n)], check=True, env=env)
    seen = -1
    while True:  # the backends of the work's connections write their counts as they exit
        time.sleep(1)
        now = {f: c for f, c in _counted(out).items() if f not in before}
        if len(now) == seen and now:
            return sum(now.values())
        seen = len(now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", required=True, help="comma-separated directories with src/weirflow")
    parser.add_argument("--jobs", default="500,2000", help="the two sizes: SMALL,LARGE")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    small, large = (int(x) for x in args.jobs.split(","))
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    pg = PgServer()
    out = pg.root / "callgrind"
    proc = start(pg, out)
    got: dict[Path, list[float]] = {t: [] for t in trees}
    try:
        for r in range(args.rounds):
            for tree in trees if r % 2 == 0 else trees[::-1]:
                per = (one_run(pg, out, tree, large) - one_run(pg, out, tree, small)) / (large - small)
                got[tree].append(per)
                print(f"round {r + 1} {tree}: {per:,.0f} server instructions/job", flush=True)
    finally:
        with contextlib.suppress(OSError, ValueError):  # a fast shutdown of the postmaster
            os.kill(int((pg.data / "postmaster.pid").read_text().split()[0]), signal.SIGINT)
        proc.wait(120)
        shutil.rmtree(pg.root, ignore_errors=True)
    print("\n| tree | server instructions per job |\n|---|---:|")
    for tree, rows in got.items():
        print(f"| {tree} | {statistics.median(rows):,.0f} |")


if __name__ == "__main__":
    main()
