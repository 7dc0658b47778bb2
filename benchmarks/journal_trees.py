"""Two source trees of weirflow side by side on the durable chain: the base and a change,
in one run, round by round alternately, each round a fresh process per tree.

``python -m benchmarks.journal_trees BASE THIS [--rounds R] [--items N] [--backends sqlite,postgres]``

A tree is a folder holding ``src/weirflow`` and ``benchmarks`` (a worktree, or
``git archive REV src benchmarks tests | tar -x -C DIR``). In each round, for each tree:
``benchmarks.journal_cpu --repeats 1`` (CPU per step of the chain in memory and with the
durable journal on a memory store: steadier than wall time on a shared machine) and
``benchmarks.durable_chain --repeats 1`` (items/s in memory, on SQLite and on
PostgreSQL, and their ratios). Every line says the load average when its round began;
compare ratios within a round, not numbers across rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def _run(tree: Path, module: str, args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
        subprocess.run(
            [sys.executable, "-m", module, *args, "--json", str(out)],
            cwd=tree,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.journal_trees", description=__doc__)
    parser.add_argument("trees", nargs=2, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    names = ["base", "this"]
    ratios: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    print("round  tree  load  memory us/step  durable us/step  CPU ratio  wall ratios (memory items/s)")
    for rnd in range(1, args.rounds + 1):
        for name, tree in zip(names, args.trees, strict=True):
            load = _load()
            cpu = _run(tree, "benchmarks.journal_cpu", ["--repeats", "1", "--items", str(args.items)])
            wall = _run(
                tree,
                "benchmarks.durable_chain",
                ["--repeats", "1", "--items", str(args.items), "--backends", args.backends],
            )
            med = cpu["median_s_per_step"]
            walls = wall["ratio_to_memory"]
            for side, r in [("cpu", cpu["ratio"]), *walls.items()]:
                ratios[name].setdefault(side, []).append(r)
            shown = "  ".join(f"{b} {r:.2f}" for b, r in walls.items())
            print(
                f"{rnd:>5}  {name:<4}  {load:>4}  {med['memory chain'] * 1e6:>14.2f}"
                f"  {med['durable chain'] * 1e6:>15.2f}  {cpu['ratio']:>9.3f}  {shown}"
                f" ({wall['median_items_per_s']['memory']:,.0f})",
                flush=True,
            )
    print("medians of the rounds:")
    for name in names:
        shown = "  ".join(f"{side} {statistics.median(v):.3f}" for side, v in ratios[name].items())
        print(f"  {name:<4} {shown}")


if __name__ == "__main__":
    main()
