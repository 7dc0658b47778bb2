"""``io16`` of ``benchmarks.executors`` as CPU time per item, beside its wall-clock rate.

``python -m benchmarks.io16_cpu [ROUNDS] [OTHER_SRC]``: each round runs, each in a fresh
subprocess and in an order that flips every round, the weirflow side of ``io16`` (3
routines, ``concurrency = 16``, ``await asyncio.sleep(0.001)``, 5,000 items) with this
checkout, with ``OTHER_SRC`` if given (the ``src`` folder of another checkout), and the
16-worker asyncio baseline. Each reports the CPU time its process used per item
(``time.process_time``) and its items/s. On a loaded machine the wall-clock ratio swings
by ±20 % from round to round; the CPU a side spends per item is what caps its rate when
the loop is the bottleneck, and it moves much less with the load. Prints every round to
stderr, then the medians and ratios.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 5000
CODE = """import asyncio, time
from benchmarks.executors import {fn} as f
t, w = time.process_time(), time.perf_counter()
asyncio.run(f({n}))
print((time.process_time() - t) / {n} * 1e6, {n} / (time.perf_counter() - w))"""


def _run(src: str, fn: str) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}")
    code = CODE.format(fn=fn, n=ITEMS)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    sides = {"weirflow": (str(ROOT / "src"), "io_weirflow")}
    if len(sys.argv) > 2:
        sides["weirflow_other"] = (sys.argv[2], "io_weirflow")
    sides["asyncio_16_workers"] = (str(ROOT / "src"), "io_asyncio")
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            got[name].append(_run(*sides[name]))
        now = {k: f"{v[-1][0]:.1f} us/item {v[-1][1]:.0f}/s" for k, v in got.items()}
        print(f"round {r + 1}: load {os.getloadavg()[0]:.1f} {now}", file=sys.stderr, flush=True)
    base_cpu = statistics.median(c for c, _ in got["asyncio_16_workers"])
    base_rate = statistics.median(s for _, s in got["asyncio_16_workers"])
    for name, values in got.items():
        cpu = statistics.median(c for c, _ in values)
        rate = statistics.median(s for _, s in values)
        print(
            f"{name}: {cpu:.1f} us CPU/item ({base_cpu / cpu:.2f} x the baseline's efficiency), "
            f"{rate:.0f} items/s ({rate / base_rate:.2f} x)"
        )


if __name__ == "__main__":
    main()
