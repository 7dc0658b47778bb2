"""``/healthz`` latency while slow clients hold connections open (slowloris).

``python -m benchmarks.slow_clients [--slow 500] [--requests 200] [--rounds 3]``

Starts ``weirflow serve --flows benchmarks.api_queues --port 0`` in a subprocess,
then in interleaved rounds times ``--requests`` sequential ``GET /healthz`` from one
keep-alive client, with no slow client (the baseline) and with ``--slow``
connections that each sent half a request and then nothing (opened fresh for each
round, within the server's header deadline). Then checks that the server closed
all of them once ``WEIRFLOW_HEADER_TIMEOUT_S`` (set to 5 s here) had passed.
Target: p99 < 100 ms with 500 slow connections open.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .api_queues import percentile

ROOT = Path(__file__).resolve().parent.parent
HEADER_TIMEOUT_S = 5


def serve() -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIRFLOW_")}
    env["WEIRFLOW_HEADER_TIMEOUT_S"] = str(HEADER_TIMEOUT_S)
    proc = subprocess.Popen(
        [sys.executable, "-m", "weirflow", "serve", "--flows", "benchmarks.api_queues", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].split()[0]
    raise RuntimeError("the server did not start")


def times(client: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    proc, url = serve()
    parts = urlsplit(url)
    runs: dict[str, list[float]] = {"none": [], "slow": []}
    closed = 0
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            times(client, 20)  # warm-up
            for _ in range(args.rounds):
                runs["none"] += times(client, args.requests)
                with ExitStack() as stack:
                    socks = []
                    for _ in range(args.slow):
                        s = stack.enter_context(socket.create_connection((parts.hostname, parts.port)))
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                        socks.append(s)
                    runs["slow"] += times(client, args.requests)
                    deadline = time.monotonic() + HEADER_TIMEOUT_S + 5
                    closed = 0
                    for s in socks:
                        s.settimeout(max(0.01, deadline - time.monotonic()))
                        try:
                            closed += s.recv(1) == b""
                        except TimeoutError:
                            pass
                        except ConnectionResetError:
                            closed += 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    for name, label in (("none", "no slow client"), ("slow", f"{args.slow} slow connections")):
        v = runs[name]
        print(
            f"{label:>24}: p50 {percentile(v, 0.5):6.2f} ms  p99 {percentile(v, 0.99):6.2f} ms  "
            f"max {max(v):6.2f} ms  ({len(v)} requests)"
        )
    ratio = percentile(runs["slow"], 0.99) / percentile(runs["none"], 0.99)
    print(f"p99 with / without: {ratio:.2f}; slow connections closed by the server: {closed}/{args.slow}")


if __name__ == "__main__":
    main()
