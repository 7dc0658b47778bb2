"""The cyclic GC inside ``weirflow serve`` while wrk starts 1-routine jobs (``POST /api/jobs``).

``python -m benchmarks.http_gc [--seconds 8] [--connections 16] [--trees DIR,DIR...]``

Starts ``weirflow serve --flows benchmarks.http_api`` with ``gc.callbacks`` timing every
collection in CPU time (``time.thread_time``: a process descheduled mid-collection on a
loaded machine does not count), warms it up with 2 s of wrk, then runs wrk for
``--seconds`` and reports, per generation, the collections, their CPU time per request and
the longest one (what the p99 of a start sees). With ``--trees``, the same for each tree's
``src`` (e.g. a ``git archive`` of an older commit), one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .http_api import ROOT, START_BODY, _env, _listening

PROBE = """
import atexit, gc, json, os, signal, sys, time
durations = {0: [], 1: [], 2: []}
started = [0.0]
def timer(phase, info):
    if phase == "start":
        started[0] = time.thread_time()
    else:
        durations[info["generation"]].append(time.thread_time() - started[0])
def reset(*_):
    for d in durations.values():
        d.clear()
def dump():
    with open(os.environ["HTTP_GC_OUT"], "w") as f:
        json.dump({g: d for g, d in durations.items()}, f)
gc.callbacks.append(timer)
signal.signal(signal.SIGUSR1, reset)
atexit.register(dump)
from weirflow.cli.app import main
sys.argv = ["weirflow", "serve", "--flows", "benchmarks.http_api", "--port", "0"]
main()
"""


def _wrk(url: str, seconds: int, connections: int, script: str) -> int:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]


def measure(tree: Path | None, seconds: int, connections: int, script: str) -> dict[str, Any]:
    env = _env()
    if tree is not None:
        env["PYTHONPATH"] = f"{tree / 'src'}{os.pathsep}{ROOT}"
    with tempfile.TemporaryDirectory() as tmp:
        env["HTTP_GC_OUT"] = out = str(Path(tmp, "gc.json"))
        proc = subprocess.Popen(
            [sys.executable, "-c", PROBE], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            url = _listening(proc, "listening on") + "/api/jobs"
            _wrk(url, 2, connections, script)
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.2)  # (the signal is handled between two bytecodes of the loop)
            requests = _wrk(url, seconds, connections, script)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        durations = {int(g): d for g, d in json.loads(Path(out).read_text()).items()}
    return {"requests": requests, "durations": durations}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--trees", default="", help="comma-separated trees (default: this one)")
    args = parser.parse_args()
    trees: list[Path | None] = [Path(t) for t in args.trees.split(",") if t] or [None]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "post.lua")
        script.write_text(
            f"wrk.method = 'POST'\nwrk.body = '{START_BODY}'\n"
            "wrk.headers['Content-Type'] = 'application/json'\n"
        )
        for tree in trees:
            result = measure(tree, args.seconds, args.connections, str(script))
            n = result["requests"]
            parts = []
            total = 0.0
            for g, d in sorted(result["durations"].items()):
                total += sum(d)
                longest = max(d, default=0.0) * 1000
                parts.append(
                    f"gen{g}: {len(d)} x, {sum(d) / n * 1e6:5.1f} us/request, longest {longest:6.2f} ms"
                )
            name = str(tree) if tree is not None else "this tree"
            head = f"{name}: {n} requests, GC {total / n * 1e6:5.1f} us CPU per request"
            print(" | ".join([head, *parts]))


if __name__ == "__main__":
    main()
