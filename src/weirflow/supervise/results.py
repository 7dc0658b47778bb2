"""A pipeline's results buffer: bounded, oldest first, nothing dropped.

The supervisor grants the pipeline's child one credit per free place
(``weirflow.supervise.pipeline_child``): the child sends an output only with a
credit in hand, so the buffer never holds more than ``capacity`` and a full buffer
blocks the pipeline's output instead of dropping it. ``take`` consumes items and
returns how many places it freed, for the supervisor to give back as credit;
``wait`` waits for an item without taking it and ``peek`` looks without consuming,
so that a consumer over HTTP takes only once it knows its client is still there
(``server.routes.pipelines``).

Every item has a position: 0 for the pipeline's first output, counting on across its
restarts. ``offset`` is the position of the oldest item waiting, and ``take_before``
consumes the items below a position: a consumer that peeked, then handled (printed,
stored) items, consumes exactly those, and asking again takes nothing more — an
interrupted consumer loses nothing, it may only see again what it had not confirmed
(``weirflow pipelines results`` does that).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

DEFAULT_RESULTS_CAPACITY = 1000


class ResultsBuffer:
    """Outputs of one pipeline, waiting to be consumed."""

    def __init__(self, capacity: int = DEFAULT_RESULTS_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("the results buffer needs a capacity of at least 1")
        self.capacity = capacity
        self.items: deque[tuple[str, Any]] = deque()
        self.total = 0  # items ever put
        self.refused: list[tuple[str, str]] = []  # (output, why) the child could not send
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self.items)

    @property
    def free(self) -> int:
        return max(0, self.capacity - len(self.items))

    def put(self, output: str, item: Any) -> None:
        # the child only sends with credit, so this never passes capacity; if it did, the
        # item is kept anyway: nothing is dropped
        self.items.append((output, item))
        self.total += 1
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    async def wait(self, wait_s: float) -> bool:
        """Wait up to ``wait_s`` for an item (none is taken); whether there is one."""
        if not self.items and wait_s > 0:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fut, wait_s)
            finally:
                if fut in self._waiters:  # timed out or cancelled: not left behind
                    self._waiters.remove(fut)
        return bool(self.items)

    @property
    def offset(self) -> int:
        """The position of the oldest item waiting (how many were ever consumed)."""
        return self.total - len(self.items)

    def take_before(self, position: int, max_items: int) -> list[tuple[str, Any]]:
        """The items waiting below ``position`` (at most ``max_items``), oldest first,
        consumed; none once they are gone (asking twice takes nothing more)."""
        n = max(0, min(position - self.offset, max_items, len(self.items)))
        return [self.items.popleft() for _ in range(n)]

    def peek(self, max_items: int) -> list[tuple[str, Any]]:
        """Up to ``max_items`` items, oldest first, left in the buffer."""
        return [self.items[i] for i in range(min(max_items, len(self.items)))]

    async def take(self, max_items: int, wait_s: float) -> list[tuple[str, Any]]:
        """Up to ``max_items`` items (``(output, item)``), oldest first, waiting up to
        ``wait_s`` for the first one."""
        await self.wait(wait_s)
        n = min(max_items, len(self.items))
        return [self.items.popleft() for _ in range(n)]
