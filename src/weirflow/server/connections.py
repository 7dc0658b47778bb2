"""Connection limits that uvicorn lacks: a deadline for a request's headers, and a cap on
open connections.

uvicorn's own keep-alive timer runs only *between* requests: a client that sends
half a request line and then nothing holds its connection (and a file descriptor)
for ever, so a few hundred such clients made a 256-descriptor server unreachable.
Written here because uvicorn (0.54) has no header-read timeout and no connection
cap (``limit_concurrency`` answers 503 only once a request's headers are complete);
hypercorn and granian would add a second server stack for these two rules.

- ``header_timeout_s``: a request's headers must be complete within it of the
  connection opening, or of the first bytes of a later request on it; else the
  server closes the connection. (Idle time between requests is keep-alive's:
  uvicorn's ``timeout_keep_alive``.)
- ``max_connections``: a connection beyond it gets ``503`` and is closed at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 28\r\n\r\ntoo many connections (limit)"
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (set per server
    by ``guarded_protocol``)."""

    header_timeout_s: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_REFUSED)
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a request's headers are in
            self._disarm()
        elif self._header_timer is None:  # the next request has begun: its headers have a deadline
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()


def guarded_protocol(*, header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for one server's limits."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )
