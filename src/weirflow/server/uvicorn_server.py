"""Running the app under uvicorn: report where it listens, end event streams on shutdown."""

from __future__ import annotations

import copy
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from .app import begin_shutdown
from .connections import guarded_protocol
from .settings import Settings

Listening = Callable[[list[str]], None]


class Server(uvicorn.Server):
    """``uvicorn.Server`` that calls ``on_listening(urls)`` once bound (useful with port 0)
    and stops the engine as shutdown begins, so open event streams end instead of holding it up."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, on_listening: Listening | None = None) -> None:
        super().__init__(config)
        self.app = app
        self.on_listening = on_listening
        self.urls: list[str] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        self.urls = [_url(s.getsockname()) for server in self.servers for s in server.sockets]
        if self.on_listening is not None:
            self.on_listening(self.urls)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await begin_shutdown(self.app)
        await super().shutdown(sockets)


def _url(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with its access log on stderr like every other log (its default
    writes it to stdout, where ``weirflow serve`` prints only where it listens)."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


def make_server(
    app: FastAPI,
    settings: Settings,
    *,
    on_listening: Listening | None = None,
    log_level: str = "warning",
    access_log: bool = False,
) -> Server:
    """A server for ``app`` on ``settings.host``/``settings.port``; call ``.run()``."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        ws="none",
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        # X-Forwarded-For/-Proto only from the proxies listed (uvicorn's own default believes
        # 127.0.0.1, so any local process could pick the address the limit of bad keys counts)
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=list(settings.forwarded_allow_ips) or "",
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        http=guarded_protocol(
            header_timeout_s=settings.header_timeout_s, max_connections=settings.max_connections
        ),
        timeout_keep_alive=settings.keep_alive_s,
        h11_max_incomplete_event_size=64 * 1024,  # a request line and headers over 64 KiB: 400
        log_config=_log_config(),
    )
    if access_log:  # (uvicorn gives its access logger --log-level, warning by default: silent)
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return Server(config, app, on_listening)
