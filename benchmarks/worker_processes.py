"""Worker processes: shutdown time, and how soon another worker resumes a job.

``python -m benchmarks.worker_processes [--rounds R] [--backends sqlite,postgres] [--json PATH]``

1. **Shutdown time** of ``WorkerSupervisor`` (``weirflow worker --processes N``) with
   N = 1 and N = 10 children, each running a job whose step outlasts the grace
   (``grace_s`` 1 s): from ``stop()`` until every child has released its job and
   exited. The contract is at most ``grace_s + 1`` s for any N; the table shows the
   time past the grace. Rounds alternate N = 1 and N = 10.
2. **Re-claim latency**: a worker process A holds a job (a long first attempt, lease
   ``LEASE_S``); an idle worker process B waits for work. A is ended, then we time from
   the signal to the start of the job's next attempt in B (the steps log's timestamp):
   - ``sigterm``: SIGTERM with ``--grace-s 0``: A releases the lease;
   - ``kill -9``: nothing is released, B takes the job once the lease has expired;
   - ``kill -9, supervised``: A is a child of a ``WorkerSupervisor`` of 2 (``weirflow
     worker --processes 2``); its replacement has the same worker id and recovers the
     job as it starts, without waiting for the lease.
   Rounds alternate the three ways.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.durable.pgserver import PgServer, started_server

from weirflow.durable import JobSpec, open_store
from weirflow.supervise.settings import SuperviseSettings
from weirflow.supervise.workers import WorkerSupervisor

ROOT = Path(__file__).resolve().parent.parent
FLOWS = "tests.durable.flows"
LONG_S = 120.0
LEASE_S = 5.0
GRACE_S = 1.0


def _starts(log: Path, job_id: str, n: int) -> float | None:
    """When the ``n``-th call (1, 2...) of ``job_id``'s step started, from the steps log."""
    if not log.exists():
        return None
    times = []
    for line in log.read_text().split():
        kind, job, _routine, _attempt, _pid, t, *_ = line.split(":")
        if kind == "start" and job == job_id:
            times.append(float(t))
    return times[n - 1] if len(times) >= n else None


async def _wait_start(log: Path, job_id: str, n: int, timeout_s: float = 120) -> float:
    deadline = time.monotonic() + timeout_s
    while (t := _starts(log, job_id, n)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"call {n} of {job_id} did not start")
        await asyncio.sleep(0.01)  # another process's file: nothing here to wait on
    return t


def _has(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


async def _wait_line(log: Path, text: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not _has(log, text):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not in {log}")
        await asyncio.sleep(0.01)  # another process's file: nothing here to wait on


def _worker(url: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "weirflow", "worker", "--store", url, "--flows", FLOWS, *args],
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


async def shutdown_once(url: str, n: int, tmp: Path) -> float:
    """Seconds from ``stop()`` to the end of a supervisor of ``n`` busy children."""
    log = tmp / f"shutdown-{n}-{time.monotonic_ns()}.log"
    store = open_store(url)
    await store.open()
    try:
        item = {"first_sleep_s": LONG_S, "log": str(log), "times": True}
        ids = [await store.submit(JobSpec(flow="one", inputs={"a.item": [item]})) for _ in range(n)]
        settings = SuperviseSettings(grace_s=GRACE_S)
        sup = WorkerSupervisor(
            url, FLOWS, processes=n, worker_options={"concurrency": 1}, settings=settings, start_timeout_s=600
        )
        async with sup:
            for job_id in ids:
                await _wait_start(log, job_id, 1)
            sup.stop()
        assert sup.stopped_in_s is not None
        return sup.stopped_in_s
    finally:
        await store.close()


async def reclaim_once(url: str, how: str, tmp: Path) -> float:
    """Seconds from ending the worker that holds a job to the start of its next attempt."""
    log = tmp / f"reclaim-{how}-{time.monotonic_ns()}.log"
    store = open_store(url)
    await store.open()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        once = str(log) + ".once"  # the first call is long, the next one (the resumed job) short
        item = {
            "first_sleep_s": LONG_S,
            "first_sleep_once": once,
            "sleep_s": 0,
            "log": str(log),
            "times": True,
        }
        job_id = await store.submit(JobSpec(flow="one", inputs={"a.item": [item]}))
        lease = ("--lease", str(LEASE_S), "--grace-s", "0")
        if how == "kill -9, supervised":
            options = {"concurrency": 1, "lease_s": LEASE_S}
            settings = SuperviseSettings(grace_s=0)
            async with WorkerSupervisor(
                url, FLOWS, processes=2, worker_options=options, settings=settings
            ) as sup:
                await _wait_start(log, job_id, 1)
                job = await store.get(job_id)
                assert job is not None
                (held,) = [c for c in sup.children() if c.worker_id == job.worker_id]
                assert held.pid is not None
                asked = time.time()
                os.kill(held.pid, signal.SIGKILL)
                return await _wait_start(log, job_id, 2) - asked
        else:
            a = _worker(url, tmp / "a.log", "--concurrency", "1", *lease)
            procs.append(a)
            await _wait_start(log, job_id, 1)
            procs.append(_worker(url, tmp / "b.log", "--concurrency", "1", *lease))
            await _wait_line(tmp / "b.log", "worker_started")  # B is up and idle
            victim = a.pid
        asked = time.time()
        os.kill(victim, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        return await _wait_start(log, job_id, 2) - asked
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        await store.close()


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(xs), "min_s": min(xs), "max_s": max(xs)}


async def run(rounds: int, backends: list[str]) -> dict[str, Any]:
    pg: PgServer | None = started_server() if "postgres" in backends else None
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp_s:
            tmp = Path(tmp_s)
            for backend in backends:
                urls = (
                    (lambda: f"sqlite:///{tmp / f'{time.monotonic_ns()}.db'}")
                    if backend == "sqlite"
                    else (lambda: pg.new_database())  # type: ignore[union-attr]
                )
                shut: dict[int, list[float]] = {1: [], 10: []}
                ways = ["sigterm", "kill -9", "kill -9, supervised"]
                reclaim: dict[str, list[float]] = {w: [] for w in ways}
                for _ in range(rounds):
                    for n in shut:
                        shut[n].append(await shutdown_once(urls(), n, tmp))
                    for way in ways:
                        reclaim[way].append(await reclaim_once(urls(), way, tmp))
                results[backend] = {
                    "shutdown": {str(n): _stats(xs) for n, xs in shut.items()},
                    "reclaim": {w: _stats(xs) for w, xs in reclaim.items()},
                }
    finally:
        if pg is not None:
            pg.destroy()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.rounds, args.backends.split(",")))
    for backend, r in results.items():
        print(f"\n{backend}: shutdown with every child busy (grace {GRACE_S:g} s)")
        for n, s in r["shutdown"].items():
            print(
                f"  N={n:>2}: median {s['median_s']:.3f} s "
                f"(past the grace {s['median_s'] - GRACE_S:+.3f} s), max {s['max_s']:.3f} s"
            )
        print(
            f"{backend}: from the end of the worker holding a job to its next attempt (lease {LEASE_S:g} s)"
        )
        base = r["reclaim"]["kill -9"]["median_s"]
        for way, s in r["reclaim"].items():
            print(
                f"  {way:<20} median {s['median_s']:.3f} s  min {s['min_s']:.3f}  max {s['max_s']:.3f}  "
                f"ratio to kill -9 {s['median_s'] / base:.3f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
