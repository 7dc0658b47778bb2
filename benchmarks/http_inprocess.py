"""HTTP start of a job against the floor, in one process, without sockets: CPU per request.

``python -m benchmarks.http_inprocess [--rounds 7] [--requests 1000]``

``benchmarks.http_api`` measures through uvicorn with wrk; on cores shared with other
work its requests/s swing with the share of the cores each server gets. This one calls
the two ASGI apps directly (weirflow's ``create_app`` with its lifespan, and the floor
app of ``benchmarks.http_floor``) in interleaved rounds on one event loop, and measures
the thread's CPU time (``time.thread_time``) per ``POST``:

- ``weirflow``: ``POST /api/jobs`` starting a 1-routine job (the job runs and finishes
  between requests, as under load);
- ``weirflow, HTTP layer``: the same request, the service's ``start`` answering an
  existing job (what FastAPI, the middleware, auth, validation and the answer cost);
- ``floor``: ``POST /start`` of the floor app.

The socket and h11 work, the same for both servers, is left out, so the ratios here
are lower than the end-to-end ones.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from weirflow.server.app import create_app
from weirflow.server.settings import Settings

from . import http_floor
from .http_api import START_BODY, one, queues100

BODY = START_BODY.encode()


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def cpu_per_request_us(app: Any, path: str, n: int) -> float:
    """The thread's CPU microseconds per request over ``n`` requests (each answered 201)."""
    scope = _scope(path)
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    started = time.thread_time()
    for _ in range(n):
        await app(dict(scope), receive, send)
        await asyncio.sleep(0)  # let the started job run, as between requests of a server
    used = time.thread_time() - started
    assert statuses == {201}, statuses
    return used / n * 1e6


async def measure(rounds: int, requests: int) -> dict[str, float]:
    app = create_app(Settings(), flows=[one, queues100])
    async with app.router.lifespan_context(app):
        service = app.state.service
        job = await service.start("one", {"only.input": [1]}, False)
        await job.wait()
        real_start = service.start

        async def answer_a_job(*args: Any, **kwargs: Any) -> Any:
            return job

        for side in (app, http_floor.app):  # warm up both
            await cpu_per_request_us(side, "/api/jobs" if side is app else "/start", requests // 4)
        runs: dict[str, list[float]] = {"weirflow": [], "weirflow, HTTP layer": [], "floor": []}
        for r in range(rounds):
            order = ["weirflow", "weirflow, HTTP layer", "floor"]
            for name in order if r % 2 == 0 else order[::-1]:
                service.start = answer_a_job if name == "weirflow, HTTP layer" else real_start
                target, path = (http_floor.app, "/start") if name == "floor" else (app, "/api/jobs")
                runs[name].append(await cpu_per_request_us(target, path, requests))
        service.start = real_start
    return {name: statistics.median(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    result = asyncio.run(measure(args.rounds, args.requests))
    floor = result["floor"]
    for name, us in result.items():
        print(f"{name:22s} {us:7.1f} us CPU per POST   floor / this: {floor / us:.2f} x")


if __name__ == "__main__":
    main()
