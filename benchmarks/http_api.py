"""HTTP API speed against the floor (a bare FastAPI + uvicorn app), with wrk.

``python -m benchmarks.http_api [--rounds 3] [--seconds 5] [--connections 16]``

Needs ``wrk`` (Debian: ``apt-get install wrk``). Starts ``weirflow serve --flows
benchmarks.http_api`` and the floor app (``benchmarks.http_floor`` under uvicorn with
the same settings: h11, no access log) in subprocesses, then in interleaved rounds
runs wrk (one thread, ``--connections``) against each for two requests:

- ``GET /api/jobs/{id}/queues`` of a paused job of 100 slots (floor: the same JSON);
- ``POST /api/jobs`` starting a job of a 1-routine flow (floor: parse the body, answer 201).

Reports requests/s and p99 of each side, and the ratios weirflow / floor.
Targets: throughput >= 0.6 x the floor, p99 <= 3 x the floor's.

``--trees A,B``: serve each tree's ``src`` (e.g. a ``git archive`` of an older commit)
instead of this checkout, all against the same floor, interleaved in each round (before
and after in one run); ``--only start`` or ``--only queues`` measures one request.

Also the server's CPU time per request (its process's user + system time over the wrk
run, from ``/proc``, divided by the requests answered) and the ratio floor / weirflow:
on a machine whose cores are shared with other work, requests/s measures the share of
the cores each server got as much as its code, while CPU per request measures the code.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

import weirflow as wf

from .api_queues import queues100

ROOT = Path(__file__).resolve().parent.parent
START_BODY = '{"flow": "one", "inputs": {"only.input": [1]}}'


@wf.routine
async def only(item: Any) -> Any:
    return item


one = wf.Flow("one")
one.add("only", only)
one.output("only.output")
__all__ = ["one", "queues100"]  # served by --flows benchmarks.http_api


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WEIRFLOW_")}


def _listening(proc: subprocess.Popen[str], marker: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if marker in line:
            m = re.search(r"http://[0-9.]+:\d+", line)
            assert m is not None
            return m.group(0)
    raise RuntimeError("the server did not start")


def serve_weirflow(tree: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """``weirflow serve`` of this checkout, or of ``tree``'s ``src`` (e.g. a ``git archive``)."""
    cmd = [sys.executable, "-m", "weirflow", "serve", "--flows", "benchmarks.http_api", "--port", "0"]
    env = _env()
    if tree is not None:
        env["PYTHONPATH"] = f"{tree / 'src'}{os.pathsep}{ROOT}"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    return proc, _listening(proc, "listening on")


def serve_floor() -> tuple[subprocess.Popen[str], str]:
    code = (
        "import uvicorn; uvicorn.run('benchmarks.http_floor:app', host='127.0.0.1', port=0, "
        "log_level='info', access_log=False, ws='none', server_header=False, http='h11')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(),
        stderr=subprocess.STDOUT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, _listening(proc, "Uvicorn running on")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: int, connections: int, script: str | None, pid: int) -> tuple[float, float, float]:
    """Requests/s, p99 in ms, and the server's CPU ms per request."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    before = cpu_s(pid)
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    used = cpu_s(pid) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    if "Non-2xx" in out:
        raise RuntimeError(f"errors from {url}:\n{out}")
    return rps, float(p99.group(1)) * scale, used * 1000 / max(requests, 1)


def paused_queues_job(url: str) -> str:
    with httpx.Client(base_url=url, timeout=10) as c:
        job = c.post("/api/jobs", json={"flow": "queues100", "keep_open": True}).json()
        c.post(f"/api/jobs/{job['id']}/pause")
        c.post(f"/api/jobs/{job['id']}/input", json={"slot": "r000.inp", "items": list(range(50))})
        assert len(c.get(f"/api/jobs/{job['id']}/queues").json()["slots"]) == 100
        return str(job["id"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--trees",
        default="",
        help="comma-separated trees whose src/ to serve, each against the same floor (default: this one)",
    )
    parser.add_argument("--only", choices=["queues", "start"], help="measure one request only")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    trees: list[Path | None] = [Path(t).resolve() for t in args.trees.split(",") if t] or [None]
    names = [str(t) if t is not None else "weirflow" for t in trees]
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "post.lua")
        lua = f"wrk.method = 'POST'\nwrk.body = '{START_BODY}'\n"
        script.write_text(lua + "wrk.headers['Content-Type'] = 'application/json'\n")
        try:
            floor, floor_url = serve_floor()
            procs.append(floor)
            servers = []
            for tree in trees:
                proc, url = serve_weirflow(tree)
                procs.append(proc)
                servers.append((proc, url, paused_queues_job(url)))
            cases: dict[str, list[tuple[str, str, int]]] = {}
            if args.only != "start":
                cases["GET queues (100 slots)"] = [
                    *(
                        (n, f"{url}/api/jobs/{job}/queues", p.pid)
                        for n, (p, url, job) in zip(names, servers, strict=True)
                    ),
                    ("floor", f"{floor_url}/queues", floor.pid),
                ]
            if args.only != "queues":
                cases["POST start (1 routine)"] = [
                    *((n, f"{url}/api/jobs", p.pid) for n, (p, url, _) in zip(names, servers, strict=True)),
                    ("floor", f"{floor_url}/start", floor.pid),
                ]
            runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
            for r in range(args.rounds):
                for name, sides in cases.items():
                    lua_script = str(script) if name.startswith("POST") else None
                    for side, url, pid in sides if r % 2 == 0 else sides[::-1]:
                        runs.setdefault((name, side), []).append(
                            wrk(url, args.seconds, args.connections, lua_script, pid)
                        )
        finally:
            for p in procs:
                p.send_signal(signal.SIGINT)
                p.wait(30)
    for name in cases:
        f = runs[(name, "floor")]
        f_rps, f_p99, f_cpu = (statistics.median(x[i] for x in f) for i in range(3))
        for side in names:
            w = runs[(name, side)]
            w_rps, w_p99, w_cpu = (statistics.median(x[i] for x in w) for i in range(3))
            label = name if len(names) == 1 else f"{name} [{side}]"
            print(
                f"{label}: weirflow {w_rps:8.0f}/s p99 {w_p99:7.2f} ms"
                f" | floor {f_rps:8.0f}/s p99 {f_p99:7.2f} ms"
                f" | throughput {w_rps / f_rps:.2f} x (target >= 0.6), p99 {w_p99 / f_p99:.2f} x"
                f" (target <= 3) | CPU per request: weirflow {w_cpu:.3f} ms, floor {f_cpu:.3f} ms,"
                f" {f_cpu / w_cpu:.2f} x"
            )


if __name__ == "__main__":
    main()
