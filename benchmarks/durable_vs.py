"""weirflow on PostgreSQL against dramatiq on Redis and DBOS on the same PostgreSQL, in one run.

``python -m benchmarks.durable_vs [--jobs N] [--workflows M] [--rounds R] [--json PATH]``

Needs ``dramatiq[redis]``, ``dbos`` and ``redis-server``, which are not weirflow
dependencies: run it from a benchmark virtualenv (``pip install -e . 'dramatiq[redis]'
dbos``; ``apt-get install redis-server``). One throw-away PostgreSQL server and one
``redis-server`` (loopback, no persistence) serve every measurement; every round
runs each side once, the order alternating between rounds, each on a fresh
database (and a flushed Redis). Reported: the median of the rounds, and the ratios
of the medians.

- **submit**: N no-op jobs from this one process. weirflow: ``engine.submit`` from
  16 concurrent coroutines, and ``engine.submit_many`` in batches of ``BATCH``;
  dramatiq: ``actor.send`` in a loop (its API is synchronous; one Redis round trip each).
- **process, 4 workers**: those N jobs run by 4 worker processes; the rate is N over
  the time from the first job's start to the last job's end as the jobs themselves
  (dramatiq) or the store's events (weirflow) record it, so start-up is not counted.
  weirflow: ``weirflow worker --concurrency 64``; dramatiq: ``dramatiq -p 4 -t 16``.
- **3-step workflow**: M workflows of three no-op steps, each step's result
  recorded durably so that a crash never runs a completed step again. DBOS:
  ``@DBOS.workflow`` calling three ``@DBOS.step``, started with
  ``DBOS.start_workflow_async`` and awaited in this process; weirflow: jobs of a
  3-routine flow submitted with ``submit_many`` and run by one ``Worker`` in this
  process (durable journal and step rows on). Timed from the first start to the
  last result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.durable.pgserver import PgServer, free_port, started_server

import weirflow as wf
from weirflow.durable import open_store
from weirflow.durable.worker import Worker

from . import durable_jobs

ROOT = Path(__file__).resolve().parent.parent
PORT_ENV = "WEIRFLOW_BENCH_REDIS_PORT"
BATCH = 1000
SUBMITTERS = 16


# -- the flows weirflow runs ------------------------------------------------------------


@wf.routine
async def _step(item: Any) -> Any:
    return item


def steps3() -> wf.Flow:
    flow = wf.Flow("steps3")
    for name in ("s1", "s2", "s3"):
        flow.add(name, _step)
    flow.connect("s1.output", "s2.input")
    flow.connect("s2.output", "s3.input")
    flow.output("s3.output")
    return flow


def noop() -> wf.Flow:
    flow = wf.Flow("noop")
    flow.add("n", _step)
    flow.output("n.output")
    return flow


# -- servers ----------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


# -- weirflow ----------------------------------------------------------------------------


async def weirflow_submit(url: str, n: int, batched: bool) -> float:
    engine = wf.Engine(store=url)
    engine.register(noop())
    async with engine:
        await engine.submit("noop", {"n.input": [0]})  # open the pool, warm up
        t0 = time.perf_counter()
        if batched:
            for start in range(0, n, BATCH):
                await engine.submit_many(
                    [("noop", {"n.input": [i]}) for i in range(start, min(n, start + BATCH))]
                )
        else:
            counter = iter(range(n))

            async def submitter() -> None:
                for i in counter:
                    await engine.submit("noop", {"n.input": [i]})

            await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        return n / (time.perf_counter() - t0)


async def weirflow_process(url: str, n: int, workers: int, tmp: Path) -> float:
    store = open_store(url)
    await store.open()
    try:
        # the warm-up job of weirflow_submit is one more
        return await durable_jobs.process_all(store, url, n + 1, workers, tmp)
    finally:
        await store.close()


async def weirflow_workflows(url: str, m: int) -> float:
    flow = steps3()
    engine = wf.Engine(store=url)
    engine.register(flow)
    async with engine:
        store = engine.store
        assert store is not None
        t0 = time.perf_counter()
        for start in range(0, m, BATCH):
            await engine.submit_many(
                [("steps3", {"s1.input": [i]}) for i in range(start, min(m, start + BATCH))]
            )
        async with Worker(store, [flow], concurrency=64, worker_id="bench") as w:
            while True:
                seen = w.reports  # (read before the count: a report meanwhile wakes the wait)
                if (await store.finished_counts("default", 0))[1] >= m:
                    break
                await w.wait_reports(seen)
        dt = time.perf_counter() - t0
        done = await store.list_jobs(status="completed", limit=m + 1)
        assert len(done) == m and all(
            j.outputs == {"s3.output": [int(j.inputs["s1.input"][0])]} for j in done
        )
        steps = await store.steps(done[0].id)
        assert [s.status for s in steps] == ["completed"] * 3, steps
    return m / dt


# -- dramatiq ------------------------------------------------------------------------------


def dramatiq_broker(port: int) -> Any:
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(host="127.0.0.1", port=port)


def dramatiq_submit(port: int, n: int) -> float:
    from benchmarks import dramatiq_tasks

    broker = dramatiq_tasks.setup(port)
    broker.flush_all()
    client = broker.client
    client.delete("bench:first", "bench:last", "bench:done")
    t0 = time.perf_counter()
    for i in range(n):
        dramatiq_tasks.noop.send(i)
    return n / (time.perf_counter() - t0)


async def dramatiq_process(port: int, n: int, workers: int, tmp: Path) -> float:
    from benchmarks import dramatiq_tasks

    broker = dramatiq_tasks.setup(port)
    client = broker.client
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
        [sys.executable, "-m", "dramatiq", "benchmarks.dramatiq_tasks", "-p", str(workers), "-t", "16"],
        cwd=ROOT,
        env={**os.environ, PORT_ENV: str(port)},
        stdout=(tmp / "dramatiq.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600
        while int(client.get("bench:done") or 0) < n:  # other processes' work: poll
            if time.monotonic() > deadline:
                raise TimeoutError("dramatiq workers did not finish in 600 s")
            await asyncio.sleep(0.25)
        first, last = float(client.get("bench:first")), float(client.get("bench:last"))
    finally:
        proc.terminate()
        proc.wait(60)
    return n / (last - first)


# -- DBOS ------------------------------------------------------------------------------------


def dbos_workflows(url: str, m: int) -> float:
    """DBOS in a process of its own (it keeps one global ``DBOS`` per process)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.dbos_steps", url, str(m)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return float(done.stdout.strip().splitlines()[-1])


# -- the run -----------------------------------------------------------------------------------


async def one_round(pg: PgServer, port: int, n: int, m: int, tmp: Path, flip: bool) -> dict[str, float]:
    row: dict[str, float] = {}

    async def weirflow_side() -> None:
        url = pg.new_database()
        row["weirflow_submit"] = await weirflow_submit(url, n, batched=False)
        url_b = pg.new_database()
        row["weirflow_submit_many"] = await weirflow_submit(url_b, n, batched=True)
        row["weirflow_process_4"] = await weirflow_process(url_b, n, 4, tmp)
        row["weirflow_workflows"] = await weirflow_workflows(pg.new_database(), m)

    async def others() -> None:
        row["dramatiq_submit"] = dramatiq_submit(port, n)
        row["dramatiq_process_4"] = await dramatiq_process(port, n, 4, tmp)
        row["dbos_workflows"] = dbos_workflows(pg.new_database(), m)

    for side in (others, weirflow_side) if flip else (weirflow_side, others):
        await side()
    print(json.dumps({k: round(v) for k, v in row.items()}), file=sys.stderr, flush=True)
    return row


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="weirflow-vs-"))
    pg = started_server()
    try:
        with redis_server(tmp) as port:
            os.environ[PORT_ENV] = str(port)
            rounds = [
                await one_round(pg, port, args.jobs, args.workflows, tmp, flip=r % 2 == 1)
                for r in range(args.rounds)
            ]
    finally:
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "jobs": args.jobs,
        "workflows": args.workflows,
        "rounds": rounds,
        "median": med,
        "ratios": {
            "submit_many / dramatiq submit": med["weirflow_submit_many"] / med["dramatiq_submit"],
            "submit / dramatiq submit": med["weirflow_submit"] / med["dramatiq_submit"],
            "process 4 workers / dramatiq": med["weirflow_process_4"] / med["dramatiq_process_4"],
            "3-step workflows / DBOS": med["weirflow_workflows"] / med["dbos_workflows"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workflows", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print("| measurement | per second (median) |\n|---|---:|")
    for k, v in result["median"].items():
        print(f"| {k} | {v:,.0f} |")
    print("\n| ratio | value |\n|---|---:|")
    for k, v in result["ratios"].items():
        print(f"| {k} | {v:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
