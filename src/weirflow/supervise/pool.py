"""The warm pool: spare child processes that have already imported the flows.

A pipeline's child spends most of its start in the spawn and the imports (the
interpreter, weirflow, the flows' modules); a spare has done that and waits for a
``run``. ``take()`` hands one out at once and starts a replacement in the
background; with no spare ready it spawns one and waits for it (a cold start).
A spare that dies while it waits is dropped and replaced.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable

from .child import ChildProcess, ExitInfo


class WarmPool:
    """Up to ``size`` ready spares made by ``make()`` (an unstarted ``ChildProcess``)."""

    def __init__(
        self,
        *,
        size: int,
        make: Callable[[], ChildProcess],
        start_timeout_s: float = 60.0,
        max_spawning: int | None = None,
    ) -> None:
        self.size = size
        # a spawn costs an interpreter's start and the imports, mostly CPU: fifty at once on
        # two cores take longer each than the start timeout and are all killed, again and
        # again; at most a few at a time (default: the number of CPUs) finish in turn
        self._spawning = asyncio.Semaphore(max_spawning or os.cpu_count() or 1)
        self.make = make
        self.start_timeout_s = start_timeout_s
        self.spares: deque[ChildProcess] = deque()
        self.starting: set[ChildProcess] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.cold_starts = 0
        self.warm_starts = 0
        self._spare = asyncio.Event()  # set while a spare is ready

    def fill(self) -> None:
        """Start as many spares as are missing (in the background)."""
        while not self._closed and len(self.spares) + len(self.starting) < self.size:
            child = self.make()
            self.starting.add(child)
            task = asyncio.get_running_loop().create_task(self._start_spare(child))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _spawn(self, child: ChildProcess) -> None:
        try:
            async with self._spawning:
                await child.start(self.start_timeout_s)
        except BaseException:
            # a cancelled take (its pipeline stopped during a cold start) holds the only
            # reference to this child: end it here, or it outlives the supervisor's close
            await child.terminate(0)
            await child.close()
            raise

    async def _start_spare(self, child: ChildProcess) -> None:
        try:
            await self._spawn(child)
        except Exception:  # noqa: BLE001 - a spare that cannot start is not kept; the next take spawns
            self.starting.discard(child)
            await child.terminate(0)
            return
        self.starting.discard(child)
        if self._closed:
            await child.terminate(0)
            return

        def gone(info: ExitInfo, child: ChildProcess = child) -> None:
            if child in self.spares:
                self.spares.remove(child)
                self.fill()

        child.on_exit = gone
        self.spares.append(child)
        self._spare.set()

    async def wait_spare(self) -> None:
        """Wait until a spare is ready (for callers that want a warm start next)."""
        while not self.spares:
            self._spare.clear()
            await self._spare.wait()

    async def take(self) -> ChildProcess:
        """A ready child: a spare if there is one (then refill), else a new one."""
        while self.spares:
            child = self.spares.popleft()
            child.on_exit = None
            if child.alive:
                self.warm_starts += 1
                self.fill()
                return child
        self.fill()
        self.cold_starts += 1
        child = self.make()
        await self._spawn(child)
        return child

    async def close(self) -> None:
        """Stop refilling and end every spare (they hold no work: SIGTERM, SIGKILL soon after)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        children = [*self.spares, *self.starting]
        self.spares.clear()
        self.starting.clear()
        await asyncio.gather(*(c.terminate(0.5) for c in children), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
