"""Run every benchmark once: ``python -m benchmarks.run [--quick] [--json PATH]``.

Throughput pairs (plain asyncio vs weirflow) are repeated and interleaved, the
order flipping each round, so slow drift of a shared machine hits both sides;
medians and the ratio of medians are reported. Latency is measured on an idle
job, one item at a time. Peak RSS is measured in a fresh subprocess per size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import asyncio_baseline as plain
from . import debugger
from . import weirflow_runs as flowed
from .report import table

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    chain: int  # items through the 5-routine chain
    threads: int  # items through the chain with plain ``def`` handlers (much slower)
    fanout: int  # items into the 1 -> 4 -> join -> sink flow
    latency: int  # items sent one at a time
    warmup: int  # latency items sent first and not counted
    rss_small: int
    rss_large: int
    repeats: int  # runs of each throughput measurement


FULL = Sizes(200_000, 5_000, 100_000, 2_000, 200, 100_000, 1_000_000, 3)
QUICK = Sizes(5_000, 300, 2_000, 200, 20, 5_000, 50_000, 2)

Measure = Callable[[int], Coroutine[Any, Any, float]]

# (name, plain-asyncio measurement, weirflow measurement, size field)
PAIRS: list[tuple[str, Measure, Measure, str]] = [
    ("chain", plain.chain_seconds, flowed.chain_seconds, "chain"),
    ("fanout", plain.fanout_seconds, flowed.fanout_seconds, "fanout"),
    ("threads", plain.threaded_chain_seconds, partial(flowed.chain_seconds, threaded=True), "threads"),
]

TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "chain_ratio": ("ratio >= 0.4", lambda v: v >= 0.4),
    "latency_weirflow_p50_ms": ("p50 < 0.2 ms", lambda v: v < 0.2),
    "rss_ratio": ("ratio within 1 +/- 0.2", lambda v: abs(v - 1.0) <= 0.2),
    "debug_attached_ratio": ("ratio >= 0.9", lambda v: v >= 0.9),
    "debug_condition_ratio": ("ratio >= 0.5", lambda v: v >= 0.5),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def items_per_s(fn: Measure, n: int) -> float:
    gc.collect()
    return n / asyncio.run(fn(n))


def throughput(sizes: Sizes) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {}
    for rnd in range(sizes.repeats):
        for name, base, ours, field in PAIRS:
            n = getattr(sizes, field)
            sides = [("asyncio", base), ("weirflow", ours)]
            if rnd % 2:
                sides.reverse()
            for side, fn in sides:
                value = items_per_s(fn, n)
                runs.setdefault(f"{name}_{side}", []).append(value)
                log(f"  round {rnd + 1}/{sizes.repeats} {name:<8} {side:<9} {value:>12,.0f} items/s")
    return runs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(sizes: Sizes) -> dict[str, float]:
    out: dict[str, float] = {}
    for side, fn in (("asyncio", plain.chain_latencies), ("weirflow", flowed.chain_latencies)):
        gc.collect()
        samples = asyncio.run(fn(sizes.latency, sizes.warmup))
        out[f"latency_{side}_p50_ms"] = percentile(samples, 0.50) * 1e3
        out[f"latency_{side}_p99_ms"] = percentile(samples, 0.99) * 1e3
        log(f"  latency {side:<9} p50 {out[f'latency_{side}_p50_ms']:.4f} ms")
    return out


def rss(n: int) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.rss", str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks.rss {n} failed:\n{proc.stderr}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"  rss {n:>9,} items: peak {result['peak_rss_mib']:.1f} MiB")
    return result


def git_commit() -> str | None:
    """Short commit of HEAD, with ``+dirty`` when src/weirflow has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src/weirflow"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def collect(sizes: Sizes, quick: bool) -> dict[str, Any]:
    started = time.time()
    log("throughput (items/s):")
    runs = throughput(sizes)
    metrics: dict[str, float] = {}
    for name, *_ in PAIRS:
        base = statistics.median(runs[f"{name}_asyncio"])
        ours = statistics.median(runs[f"{name}_weirflow"])
        metrics[f"{name}_asyncio_items_per_s"] = base
        metrics[f"{name}_weirflow_items_per_s"] = ours
        metrics[f"{name}_ratio"] = ours / base
    log("debugger overhead on the chain (baseline: no debugger):")
    debug_metrics, debug_runs = debugger.measure(sizes.chain, sizes.repeats)
    metrics.update(debug_metrics)
    runs.update(debug_runs)
    log("latency, one item at a time through 5 hops:")
    metrics.update(latency(sizes))
    log("peak RSS, fresh process per size:")
    small, large = rss(sizes.rss_small), rss(sizes.rss_large)
    metrics["rss_small_peak_mib"] = small["peak_rss_mib"]
    metrics["rss_large_peak_mib"] = large["peak_rss_mib"]
    metrics["rss_ratio"] = large["peak_rss_mib"] / small["peak_rss_mib"]
    targets = {
        key: {"target": text, "value": metrics[key], "met": bool(check(metrics[key]))}
        for key, (text, check) in TARGETS.items()
    }
    return {
        "meta": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "commit": git_commit(),
            "quick": quick,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": time.time() - started,
        },
        "sizes": asdict(sizes),
        "metrics": metrics,
        "targets": targets,
        "runs": runs,
        "rss": {"small": small, "large": large},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results = collect(QUICK if args.quick else FULL, args.quick)
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
