"""Server-Sent Events: an ``EventLog`` as a ``text/event-stream`` body.

Each event is written as ``id: N`` / ``event: KIND`` / ``data: JSON``. A client
reconnecting with ``Last-Event-ID: N`` gets every kept event after ``N``; if some
were already dropped from the ring buffer, a ``gap`` event (no id) says how
many. While nothing happens a comment line is sent every ``heartbeat_s`` so
proxies keep the connection open. The stream ends after the job's ``end``
event, or when the server shuts down.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from .events import EventLog, LoggedEvent
from .jsonsafe import jsonable

RETRY_MS = 1000


def _data(payload: dict[str, Any]) -> str:
    return json.dumps(jsonable(payload), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_event(event: LoggedEvent) -> bytes:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {_data(event.data)}\n\n".encode()


def format_gap(missed: int, after: int) -> bytes:
    return f"event: gap\ndata: {_data({'missed': missed, 'after': after})}\n\n".encode()


async def event_stream(log: EventLog, after: int, heartbeat_s: float) -> AsyncIterator[bytes]:
    """The events of ``log`` with ``id > after``, then every new one until the log closes."""
    yield f"retry: {RETRY_MS}\n\n".encode()
    last = after
    while True:
        missed, events = log.since(last)
        if missed:
            yield format_gap(missed, last)
        for event in events:
            yield format_event(event)
            last = event.id
        if log.closed and last >= log.last_id:
            return
        if not await log.wait(last, heartbeat_s):
            yield b": keep-alive\n\n"
