"""A pipeline's results buffer: bounded, oldest first, nothing dropped.

The supervisor grants the pipeline's child one credit per free place
(``weirflow.supervise.pipeline_child``): the child sends an output only with a
credit in hand, so the buffer never holds more than ``capacity`` and a full buffer
blocks the pipeline's output instead of dropping it. ``take`` consumes items and
returns how many places it freed, for the supervisor to give back as credit.
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

    async def take(self, max_items: int, wait_s: float) -> list[tuple[str, Any]]:
        """Up to ``max_items`` items (``(output, item)``), oldest first, waiting up to
        ``wait_s`` for the first one."""
        if not self.items and wait_s > 0:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fut, wait_s)
        n = min(max_items, len(self.items))
        return [self.items.popleft() for _ in range(n)]
