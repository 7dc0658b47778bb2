"""In-process wake-ups: a submit sets an ``asyncio.Event`` per queue that idle workers
of the same store object wait on (other processes are reached by the store's own
mechanism, or by the worker's bounded wait)."""

from __future__ import annotations

import asyncio
import contextlib


class Wakeups:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, queue: str) -> None:
        event = self._events.get(queue)
        if event is not None:
            event.set()

    async def wait(self, queue: str, timeout_s: float) -> None:
        event = self._events.setdefault(queue, asyncio.Event())
        if timeout_s <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()
        event.clear()

    def notify_all(self) -> None:
        for event in self._events.values():
            event.set()
