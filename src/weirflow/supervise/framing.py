"""Frames on a supervisor <-> child pipe: length-prefixed, size-limited, with request ids.

A frame is a 12-byte header — the payload's length (4 bytes) and a request id
(8 bytes), big-endian — then the payload, a pickled ``(kind, body)`` pair. Request
id 0 is a notification (no answer); any other id is a command whose answer carries
the same id, so an answer is matched to its command by id, never by order.

Both sides trust each other (the supervisor spawned the child), hence pickle; what
they do not trust is the content: a payload past ``max_frame_bytes`` is refused by
the sender (``FrameError``) and, if one arrives anyway, skipped by the receiver
(the stream stays in step: the header said how long it is) and reported against its
id; a payload that does not unpickle to a pair is reported the same way.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from ..errors import FrameError

HEADER = struct.Struct("!IQ")
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
_SKIP_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame read: ``request_id`` (0: notification), ``kind`` and ``body``, or
    ``error`` (a ``FrameError``) when its payload was oversized or malformed."""

    request_id: int
    kind: str
    body: Any
    error: FrameError | None = None


def encode(request_id: int, kind: str, body: Any, *, max_frame_bytes: int) -> bytes:
    """The bytes of one frame; ``FrameError`` if it cannot be pickled or is too large."""
    try:
        payload = pickle.dumps((kind, body), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - any pickling failure is the caller's bad argument
        raise FrameError(f"cannot encode {kind!r}: {type(e).__name__}: {e}", reason="malformed") from None
    if len(payload) > max_frame_bytes:
        raise FrameError(
            f"{kind!r} is {len(payload)} bytes encoded, over the {max_frame_bytes}-byte frame limit",
            reason="oversized",
        )
    return HEADER.pack(len(payload), request_id) + payload


async def read_frame(reader: asyncio.StreamReader, *, max_frame_bytes: int) -> Frame | None:
    """The next frame, or ``None`` at end of stream (the peer closed or died)."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    length, request_id = HEADER.unpack(header)
    if length > max_frame_bytes:
        left = length
        while left:
            chunk = await reader.read(min(left, _SKIP_CHUNK))
            if not chunk:
                return None
            left -= len(chunk)
        error = FrameError(f"frame of {length} bytes is over the {max_frame_bytes}-byte limit", "oversized")
        return Frame(request_id, "", None, error)
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    try:
        kind, body = pickle.loads(payload)  # noqa: S301 - our own child's bytes (see docstring)
        if not isinstance(kind, str):
            raise TypeError("kind is not a string")
    except Exception as e:  # noqa: BLE001 - whatever is wrong with it, it is a malformed frame
        error = FrameError(f"malformed frame: {type(e).__name__}: {e}", "malformed")
        return Frame(request_id, "", None, error)
    return Frame(request_id, kind, body)
