"""``chain_gen`` (weirflow's side of ``benchmarks.executors``' routilux pair) for two
versions of weirflow, interleaved.

``python -m benchmarks.chain_gen_versions OTHER_SRC [ITEMS] [ROUNDS]``: OTHER_SRC is the
``src`` folder of another checkout (``git archive COMMIT src | tar -x -C DIR``). Each
round runs both versions, each in a fresh subprocess (best of 3 runs of ``ITEMS`` items,
5,000 by default) in an order that flips every round; prints every round, the medians and
their ratio (this checkout over OTHER_SRC). routilux itself is not needed: weirflow's
side of the pair is weirflow's own flow (``routilux_side.chain_gen``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rate(src: str, items: int) -> float:
    code = (
        "import asyncio\n"
        "from benchmarks.routilux_side import weirflow_seconds\n"
        f"print(max({items} / asyncio.run(weirflow_seconds({items})) for _ in range(3)))\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main() -> None:
    other = sys.argv[1]
    items = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    trees = {"this": str(ROOT / "src"), "other": other}
    rates: dict[str, list[float]] = {k: [] for k in trees}
    for r in range(rounds):
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in order:
            rates[name].append(_rate(trees[name], items))
            print(f"round {r + 1}/{rounds} {name:5} {rates[name][-1]:>9,.0f} items/s", file=sys.stderr)
    this, that = statistics.median(rates["this"]), statistics.median(rates["other"])
    both = f"this {this:,.0f} items/s, other {that:,.0f} items/s"
    print(f"chain_gen, {items} items: {both}, ratio {this / that:.2f}")


if __name__ == "__main__":
    main()
