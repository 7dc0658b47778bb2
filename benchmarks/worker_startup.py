"""What a ``weirflow worker`` process costs to start: CPU and wall time from spawn to its
first job, for two or more source trees in interleaved rounds.

``python -m benchmarks.worker_startup --trees BEFORE,AFTER [--stores postgres,redis,sqlite] [--rounds R]``

Each tree is a directory holding ``src/weirflow`` (``git archive <commit> src | tar -x -C
DIR``). One throw-away PostgreSQL server and one ``redis-server`` serve every round. Per
round, store and tree (the trees' order flips every round): a fresh database (a new
PostgreSQL database, an unused Redis database, a new SQLite file) made and migrated by this
process, one ``noop`` job submitted, then one ``python -m weirflow worker --flows
tests.durable.flows --concurrency 64`` of that tree (``PYTHONPATH``) spawned. When the job
is finished (``Store.wait_finished``: the store's notifications, no polling):

- **cpu**: the worker's CPU time so far (user + system, ``/proc/PID/stat``, 10 ms ticks):
  interpreter start, imports, flow loading, store connection, the first claim and the one
  job (a few hundred µs of it);
- **claim**: wall time from the spawn to the job's ``running`` event (the first claim), as
  the worker's clock records it (same machine);

then the worker is stopped with SIGTERM. Also measured per round and tree, as context: the
CPU of ``python -c "import weirflow.cli.app"`` (``wait4``'s rusage): the CLI's imports
alone. The interpreter's own start (``python -c pass``) is printed once.

On a shared machine read the CPU columns (the wall column moves with the load).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.durable.pgserver import started_server as started_pg
from tests.redisserver import started_server as started_redis

from weirflow.durable import JobSpec, open_store

ROOT = Path(__file__).resolve().parent.parent
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime


def child_env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{ROOT}"}


def run_cpu_s(args: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one run of ``python args``, from ``wait4``."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{args} exited {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


async def first_job(url: str, tree: Path, log: Path) -> tuple[float, float]:
    """(CPU s to the first job finished, wall s from spawn to its claim) of one worker."""
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="noop", inputs={"n.input": [1]}, max_attempts=1))
        spawned = time.time()
        with log.open("w") as out:
            proc = subprocess.Popen(  # noqa: ASYNC220 - the spawn is what is measured
                [
                    sys.executable,
                    "-m",
                    "weirflow",
                    "worker",
                    "--store",
                    url,
                    "--flows",
                    "tests.durable.flows",
                    "--concurrency",
                    "64",
                ],
                cwd=ROOT,
                env=child_env(tree),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            record = await store.wait_finished(job_id, 120)
            cpu = proc_cpu_s(proc.pid)
            if record is None or record.status != "completed":
                raise RuntimeError(f"job {job_id}: {record}; see {log}")
        finally:
            proc.terminate()
            proc.wait(60)  # (after the measurement)
        claims = [e.at for e in await store.events(job_id=job_id, kind="running")]
    finally:
        await store.close()
    return cpu, min(claims) - spawned


def new_url(kind: str, servers: dict[str, Any], tmp: Path, n: int) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'start-{n}.db'}"
    return str(servers[kind].new_database())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", required=True, help="comma-separated directories with src/weirflow")
    parser.add_argument("--stores", default="postgres,redis", help="of postgres, redis, sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    kinds = args.stores.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="weirflow-startup-"))
    servers: dict[str, Any] = {}
    rows: dict[tuple[str, Path], list[tuple[float, float]]] = {(k, t): [] for k in kinds for t in trees}
    imports: dict[Path, list[float]] = {t: [] for t in trees}
    try:
        if "postgres" in kinds:
            servers["postgres"] = started_pg()
        if "redis" in kinds:
            servers["redis"] = started_redis()
        for tree in trees:  # compiled once, before the rounds: no round pays for the .pyc files
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "src")], check=True)
        bare = statistics.median(run_cpu_s(["-c", "pass"], dict(os.environ)) for _ in range(3))
        print(f"python -c pass: {bare * 1e3:.0f} ms CPU", flush=True)
        n = 0
        for r in range(args.rounds):
            for tree in trees if r % 2 == 0 else trees[::-1]:
                imports[tree].append(run_cpu_s(["-c", "import weirflow.cli.app"], child_env(tree)))
                for kind in kinds:
                    n += 1
                    got = asyncio.run(first_job(new_url(kind, servers, tmp, n), tree, tmp / f"w{n}.log"))
                    rows[kind, tree].append(got)
                    print(
                        f"round {r + 1} {kind:8} {tree}: cpu {got[0] * 1e3:4.0f} ms,"
                        f" claim after {got[1] * 1e3:4.0f} ms (imports {imports[tree][-1] * 1e3:.0f} ms)",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            server.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nmedians of {args.rounds} rounds (ms)\n")
    print("| store | tree | CPU to first job | wall to first claim | CPU of the CLI's imports |")
    print("|---|---|---:|---:|---:|")
    for kind in kinds:
        for tree in trees:
            got = rows[kind, tree]
            cpu, wall = (statistics.median(x[i] for x in got) for i in range(2))
            imp = statistics.median(imports[tree])
            print(f"| {kind} | {tree} | {cpu * 1e3:.0f} | {wall * 1e3:.0f} | {imp * 1e3:.0f} |")
    if len(trees) > 1:
        for kind in kinds:
            base = statistics.median(x[0] for x in rows[kind, trees[0]])
            for tree in trees[1:]:
                cpu = statistics.median(x[0] for x in rows[kind, tree])
                print(f"{kind}: CPU {tree.name} / {trees[0].name} = {cpu / base:.2f}")


if __name__ == "__main__":
    main()
