"""ASGI middleware capping request bodies: ``413`` beyond ``max_bytes``.

A declared ``Content-Length`` over the cap is refused before anything is read;
a body without one (chunked) is counted while it is read, and reading stops at
the first chunk past the cap. A body of a declared length within the cap, not
chunked, is passed on as it is: the server frames it by that length (HTTP/1.1),
so it cannot grow past it, and the request pays for no wrapper.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body grows past the cap (rendered as ``413``)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than {max_bytes} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared == -1:
            await _reply(send, 400, "Content-Length is not a non-negative integer")
            return
        if declared is not None and declared > self.max_bytes:
            await _reply(send, 413, f"request body is larger than {self.max_bytes} bytes")
            return
        if declared is not None and not chunked:  # (framed by its length: see the module doc)
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as e:
            if started:
                raise
            await _reply(send, 413, str(e.detail))


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared length (``None`` if absent, ``-1`` if malformed), and whether the body is
    sent with a ``Transfer-Encoding`` (chunked: then the length is not what frames it)."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return -1, chunked
            declared = n if n >= 0 else -1
            if declared == -1:
                return declared, chunked
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the unread rest of the body is not worth reading
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
