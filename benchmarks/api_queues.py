"""``GET /api/jobs/{id}/queues`` latency with 100 slots, against a live server on loopback.

``python -m benchmarks.api_queues [--requests N] [--warmup N] [--json PATH]``

Starts ``weirflow serve --flows benchmarks.api_queues --port 0`` in a subprocess
(so client and server do not share a GIL), starts a ``keep_open`` job of
``queues100`` (a chain of 100 routines, one slot each), pauses it with items
queued in its first slot, then times N sequential requests from one keep-alive
``httpx.Client`` (after a warm-up), each checked for status 200 and 100 slots.
Reports p50/p90/p99/max in milliseconds; target p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

import weirflow as wf

ROOT = Path(__file__).resolve().parent.parent
ROUTINES = 100
QUEUED = 50  # items left in the first slot while the job is paused
TARGET_P99_MS = 10.0


class Forward(wf.Routine):
    inp = wf.Slot(capacity=100)
    out = wf.Event()

    @inp.handler
    async def forward(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


def build() -> wf.Flow:
    flow = wf.Flow("queues100")
    for i in range(ROUTINES):
        flow.add(f"r{i:03d}", Forward())
    for i in range(ROUTINES - 1):
        flow.connect(f"r{i:03d}.out", f"r{i + 1:03d}.inp")
    flow.output(f"r{ROUTINES - 1:03d}.out")
    return flow


queues100 = build()  # served by ``--flows benchmarks.api_queues``


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def serve() -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIRFLOW_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "weirflow", "serve", "--flows", "benchmarks.api_queues", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # "weirflow: listening on URL (...)" once bound
        if line.startswith("weirflow: listening on "):
            return proc, line.split()[3]
    proc.communicate()
    raise RuntimeError(f"weirflow serve exited with {proc.returncode} before listening")


def measure(url: str, requests: int, warmup: int) -> list[float]:
    with httpx.Client(base_url=url, timeout=10) as client:
        job = client.post("/api/jobs", json={"flow": "queues100", "keep_open": True}).json()
        path = f"/api/jobs/{job['id']}/queues"
        client.post(f"/api/jobs/{job['id']}/pause")
        sent = client.post(
            f"/api/jobs/{job['id']}/input", json={"slot": "r000.inp", "items": list(range(QUEUED))}
        )
        assert sent.status_code == 202, sent.text
        samples = []
        for n in range(warmup + requests):
            t0 = time.perf_counter()
            response = client.get(path)
            dt = time.perf_counter() - t0
            if response.status_code != 200 or len(response.json()["slots"]) != ROUTINES:
                raise RuntimeError(f"bad answer: {response.status_code} {response.text[:200]}")
            if n >= warmup:
                samples.append(dt * 1e3)
        client.post(f"/api/jobs/{job['id']}/cancel")
        return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api_queues", description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    proc, url = serve()
    try:
        samples = measure(url, args.requests, args.warmup)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)  # reads the rest of its output and closes the pipe
    stats = {
        "p50_ms": percentile(samples, 0.50),
        "p90_ms": percentile(samples, 0.90),
        "p99_ms": percentile(samples, 0.99),
        "max_ms": max(samples),
        "mean_ms": statistics.fmean(samples),
    }
    print(
        f"GET /api/jobs/{{id}}/queues, {ROUTINES} slots, {args.requests} requests "
        f"(after {args.warmup} warm-up), Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    for key, value in stats.items():
        print(f"  {key:<8} {value:8.3f}")
    met = stats["p99_ms"] < TARGET_P99_MS
    print(f"  target p99 < {TARGET_P99_MS:g} ms: {'met' if met else 'NOT met'}")
    if args.json is not None:
        results = {"requests": args.requests, "slots": ROUTINES, "metrics": stats, "met": met}
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
