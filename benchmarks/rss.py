"""Peak memory of one chain job: ``python -m benchmarks.rss N`` prints one JSON line.

Run in a fresh process per N so that each peak belongs to one job alone. Items are
produced lazily (``job.send`` in a loop) so the input never exists as a list; with
every slot bounded at 1000, the peak should not depend on N.

The peak is ``VmHWM`` from ``/proc/self/status``, not ``ru_maxrss``: on Linux a
process started by ``subprocess`` (vfork + exec) inherits into ``ru_maxrss`` the
peak of the parent's address space at exec time, so a benchmark parent that has
grown to 33 MiB makes every child report at least 33 MiB. ``VmHWM`` belongs to
the new address space alone. ``ru_maxrss`` is still reported, for reference, and
is the fallback where ``/proc`` is missing.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import sys
import time

import psutil

from .weirflow_runs import fed_chain


def peak_rss_kib() -> float:
    """High-water resident set size of this process's own address space, in KiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def measure(n: int) -> dict[str, float]:
    gc.collect()
    start_rss = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    asyncio.run(fed_chain(n))
    seconds = time.perf_counter() - t0
    peak_mib = peak_rss_kib() / 1024
    return {
        "items": n,
        "peak_rss_mib": peak_mib,
        "start_rss_mib": start_rss / 2**20,
        "growth_mib": peak_mib - start_rss / 2**20,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": seconds,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m benchmarks.rss N", file=sys.stderr)
        return 2
    print(json.dumps(measure(int(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
