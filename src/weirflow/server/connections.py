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

Also, a response goes out in one ``send``: uvicorn writes a response's head and its body
to the socket one after the other (two system calls, two TCP segments, two wake-ups of
the client, on every request). ``CorkedTransport`` keeps what is written during one pass
of the event loop and sends it together: at the response's end, or at the end of the
pass for a response still streaming (an event stream's head and each of its events go
out as before, a loop pass later at most).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
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
        self.transport = CorkedTransport(transport, self.loop)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a request's headers are in
            self._disarm()
        elif self._header_timer is None:  # the next request has begun: its headers have a deadline
            self._arm()

    def on_response_complete(self) -> None:
        transport = self.transport
        if isinstance(transport, CorkedTransport):
            transport.flush()  # (before uvicorn looks at a pipelined next request)
        super().on_response_complete()

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


class CorkedTransport(asyncio.Transport):
    """A connection's transport whose writes during one pass of the event loop go to the
    socket in one ``write`` (see the module docstring): ``flush()`` sends them now, and
    closing sends them first; the rest is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self.flush)  # (a streaming response's part waits one pass at most)
        else:
            self._pending.append(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            if not self._transport.is_closing():
                self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending or ()))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


def guarded_protocol(*, header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for one server's limits."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )
