"""``io16`` and ``cpu`` of ``benchmarks.executors`` for two versions of weirflow, interleaved.

``python -m benchmarks.executors_versions BEFORE_SRC [ROUNDS]``: BEFORE_SRC is the ``src``
folder of another checkout (``git archive COMMIT src | tar -x -C DIR``). Each round runs,
each in a fresh subprocess and in an order that flips every round: io16 with this
checkout, io16 with BEFORE_SRC, the 16-worker asyncio baseline, the process executor with
this checkout and with BEFORE_SRC, and the single-core loop. Prints every round's rates to
stderr, then JSON and the ratios of the medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IO_ITEMS = 5000
CPU_ITEMS = 2000
_IMPORT = "from benchmarks.executors import "
CODE = {
    "io16": _IMPORT + f"io_weirflow as f; print({IO_ITEMS} / asyncio.run(f({IO_ITEMS})))",
    "io16_asyncio": _IMPORT + f"io_asyncio as f; print({IO_ITEMS} / asyncio.run(f({IO_ITEMS})))",
    "cpu": _IMPORT
    + f"cpu_weirflow as f; print({CPU_ITEMS} / asyncio.run(f({CPU_ITEMS}, int(sys.argv[1])))[0])",
    "cpu_loop": _IMPORT + f"cpu_loop as f; print({CPU_ITEMS} / f({CPU_ITEMS}, int(sys.argv[1])))",
}


def _run(code: str, src: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}")
    cmd = [sys.executable, "-c", "import asyncio, sys\n" + code, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout


def main() -> None:
    before = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    here = str(ROOT / "src")
    spin = _run("from benchmarks.executors import calibrate; print(calibrate())", here).strip()
    sides = [
        ("io16", "after", here),
        ("io16", "before", before),
        ("io16_asyncio", "-", here),
        ("cpu", "after", here),
        ("cpu", "before", before),
        ("cpu_loop", "-", here),
    ]
    runs: dict[str, list[float]] = {}
    loads = []
    for r in range(rounds):
        for name, version, src in sides if r % 2 == 0 else sides[::-1]:
            rate = float(_run(CODE[name], src, spin).split()[-1])
            runs.setdefault(f"{name}:{version}", []).append(rate)
        loads.append(os.getloadavg()[0])
        rates = " ".join(f"{k}={v[-1]:.0f}" for k, v in runs.items())
        print(f"round {r + 1}: load {loads[-1]:.1f} {rates}", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps({"spin_rounds": int(spin), "loads": loads, "median": med, "runs": runs}, indent=1))
    for version in ("after", "before"):
        io = med[f"io16:{version}"] / med["io16_asyncio:-"]
        cpu = med[f"cpu:{version}"] / med["cpu_loop:-"]
        print(f"{version}: io16 {io:.3f} x 16 asyncio workers; cpu {cpu:.2f} x one core")


if __name__ == "__main__":
    main()
