"""Durable no-op jobs per second: submitted, and processed by 1 and 4 worker processes.

``python -m benchmarks.durable_jobs [--jobs N] [--json PATH] [--backends sqlite,postgres] [--redis]``

For each backend and worker count: a fresh store (a SQLite file in a temporary
folder; a new database on a throw-away PostgreSQL server on loopback), N jobs of
the ``noop`` flow (one routine returning its item) submitted from this process
(``submit`` rate: 16 concurrent submitters), then ``weirflow worker`` processes
started and timed from the first claim to the last completion, read from the
store's own events (process start-up is not counted). Each worker runs
``--concurrency 64``; each job runs through ``engine.start`` + ``job.wait`` and
records its one step. With ``--redis`` the same no-op job count goes through
``arq`` on a local ``redis-server`` when both are installed, for the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.durable.pgserver import PgServer, started_server

from weirflow.durable import JobSpec, Store, open_store

ROOT = Path(__file__).resolve().parent.parent
FLOWS = "tests.durable.flows"
SUBMITTERS = 16
CONCURRENCY = 64


async def submit_all(store: Store, n: int) -> float:
    """Submit ``n`` no-op jobs with ``SUBMITTERS`` concurrent submitters; returns jobs/s."""
    spec = JobSpec(flow="noop", inputs={"n.input": [1]}, max_attempts=1)
    counter = iter(range(n))

    async def submitter() -> None:
        for _ in counter:
            await store.submit(spec)

    t0 = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
    return n / (time.perf_counter() - t0)


async def process_all(store: Store, url: str, n: int, workers: int, log_dir: Path) -> float:
    """Start ``workers`` worker processes; jobs/s from the first claim to the last completion."""
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
            [
                sys.executable,
                "-m",
                "weirflow",
                "worker",
                "--store",
                url,
                "--flows",
                FLOWS,
                "--concurrency",
                str(CONCURRENCY),
                "--worker-id",
                f"bench-{i}",
            ],
            cwd=ROOT,
            stdout=(log_dir / f"worker-{i}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i in range(workers)
    ]
    try:
        deadline = time.monotonic() + 600
        while (await store.finished_counts("default", 0))[1] < n:  # other processes' work: poll
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not finish in 600 s")
            await asyncio.sleep(1.0)  # (a count over every event so far: the server pays for each)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    claims = [e.at for e in await store.events(kind="running")]
    ends = [e.at for e in await store.events(kind="completed")]
    assert len(ends) == n, (len(ends), n)
    return n / (max(ends) - min(claims))


async def measure(backend: str, workers: int, n: int, pg: PgServer | None, tmp: Path) -> dict[str, Any]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp / f'bench-{workers}.db'}"
    else:
        assert pg is not None
        url = pg.new_database()
    store = open_store(url)
    await store.open()
    try:
        submitted = await submit_all(store, n)
        processed = await process_all(store, url, n, workers, tmp)
    finally:
        await store.close()
    row = {
        "backend": backend,
        "workers": workers,
        "jobs": n,
        "submitted_per_s": submitted,
        "processed_per_s": processed,
    }
    print(
        f"{backend:9} {workers} worker(s): submit {submitted:8.0f} jobs/s, process {processed:8.0f} jobs/s",
        file=sys.stderr,
        flush=True,
    )
    return row


async def arq_rates(n: int, tmp: Path) -> dict[int, tuple[float, float]] | None:
    """arq's ``{workers: (submitted/s, processed/s)}``, or ``None`` if arq or redis-server is missing."""
    if shutil.which("redis-server") is None or importlib.util.find_spec("arq") is None:
        return None
    from benchmarks import durable_arq

    return await durable_arq.run(n, tmp)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    backends = args.backends.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="weirflow-bench-"))
    pg = started_server() if "postgres" in backends else None
    rows = []
    try:
        for backend in backends:
            for workers in (1, 4):
                rows.append(await measure(backend, workers, args.jobs, pg, tmp))
    finally:
        if pg is not None:
            pg.destroy()
    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "jobs": args.jobs,
        "rows": rows,
    }
    if args.redis:
        arq = await arq_rates(args.jobs, tmp)
        result["arq"] = None
        if arq is not None:
            result["arq"] = [
                {"workers": w, "submitted_per_s": sub, "processed_per_s": proc}
                for w, (sub, proc) in arq.items()
            ]
            for r in rows:
                if r["backend"] == "postgres" and r["workers"] in arq:
                    r["vs_arq"] = r["processed_per_s"] / arq[r["workers"]][1]
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--redis", action="store_true", help="also measure arq on a local redis-server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print("| backend | workers | submitted jobs/s | processed jobs/s |\n|---|---:|---:|---:|")
    for r in result["rows"]:
        rates = f"{r['submitted_per_s']:,.0f} | {r['processed_per_s']:,.0f}"
        print(f"| {r['backend']} | {r['workers']} | {rates} |")
    for r in result.get("arq") or []:
        rates = f"{r['submitted_per_s']:,.0f} | {r['processed_per_s']:,.0f}"
        print(f"| arq + redis (comparison) | {r['workers']} | {rates} |")
    for r in result["rows"]:
        if "vs_arq" in r:
            print(f"postgres, {r['workers']} worker(s): {r['vs_arq']:.2f} x arq's processed rate")
    if args.redis and not result.get("arq"):
        print("arq or redis-server is not installed: no comparison")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
