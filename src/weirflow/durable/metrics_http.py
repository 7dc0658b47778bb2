"""``weirflow worker --metrics-port N``: ``GET /metrics`` of the worker's ``QueueMetrics``.

Served by uvicorn on the worker's own event loop (scrapes read the store there); imported
only when a port is asked for, so the worker command does not load the HTTP stack
otherwise. Like ``weirflow serve`` it listens on loopback unless API keys are set
(``WEIRFLOW_API_KEYS``): then every scrape needs ``Authorization: Bearer KEY`` (any
role; Prometheus' ``authorization`` setting sends it).

The app is a plain ASGI callable rather than a FastAPI one: one route, no schema, and
nothing of the API's stack (sessions, CORS, the engine) belongs in a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from typing import Any

import uvicorn

from .metrics import CONTENT_TYPE, QueueMetrics

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


#: why a request's ``Host`` header is refused, as ``(status, message)``; ``None``: it is not
HostCheck = Callable[[str], "tuple[int, str] | None"]


def metrics_app(
    metrics: QueueMetrics, api_keys: Mapping[str, object], *, host_check: HostCheck | None = None
) -> Callable[..., Awaitable[None]]:
    """The ASGI app: ``GET /metrics`` (with a key when ``api_keys`` is not empty), else 404;
    ``host_check`` refuses requests by their ``Host`` header first (``weirflow worker``
    passes the HTTP server's check when keyless: see ``cli/worker_metrics.py``)."""
    keys = [k.encode() for k in api_keys]

    def allowed(scope: Scope) -> bool:
        if not keys:
            return True
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        # every key compared, in constant time, whether or not one matched
        return any([hmac.compare_digest(given, k) for k in keys])

    async def app(scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return
        if host_check is not None:
            raw = next((v for k, v in scope.get("headers", []) if k == b"host"), b"").decode("latin-1")
            refused = host_check(raw)
            if refused is not None:
                await _answer(send, refused[0], refused[1].encode() + b"\n")
                return
        if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 404, b"not found: the metrics are at GET /metrics\n")
        elif not allowed(scope):
            await _answer(send, 401, b"an API key is needed: Authorization: Bearer KEY\n")
        else:
            await _answer(send, 200, await metrics.render(), CONTENT_TYPE)

    return app


async def _answer(send: Send, status: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
    headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MetricsServer(uvicorn.Server):
    """uvicorn without its signal handlers (SIGTERM and SIGINT are the worker's), which says
    when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


async def start_metrics_server(
    metrics: QueueMetrics,
    *,
    host: str,
    port: int,
    api_keys: Mapping[str, object],
    host_check: HostCheck | None = None,
) -> tuple[MetricsServer, asyncio.Task[None], str]:
    """Listen on ``host``:``port`` (0: a free port); returns the server once it listens, the
    task serving it (set ``server.should_exit`` and await it to stop) and its URL.
    ``OSError`` (one line) if the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host.strip("[]"), port), family=family)  # (bound here: an
    # error is an OSError to report, not uvicorn's exit from inside a task)
    bound_host, bound_port = sock.getsockname()[:2]
    url = (
        f"http://[{bound_host}]:{bound_port}/metrics"
        if ":" in bound_host
        else f"http://{bound_host}:{bound_port}/metrics"
    )
    config = uvicorn.Config(
        metrics_app(metrics, api_keys, host_check=host_check),
        lifespan="off",
        ws="none",
        log_level="warning",
        access_log=False,
    )
    server = MetricsServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="weirflow:metrics")
    listening = asyncio.ensure_future(server.listening.wait())
    await asyncio.wait([task, listening], return_when=asyncio.FIRST_COMPLETED)
    listening.cancel()
    if task.done():
        task.result()
        raise OSError(f"the metrics server on {host}:{port} ended at once")
    return server, task, url
