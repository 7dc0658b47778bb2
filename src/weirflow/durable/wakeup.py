"""In-process wake-ups: a submit sets an ``asyncio.Event`` per queue that idle workers
of the same store object wait on, and a job's change wakes whoever waits for it to
finish (other processes are reached by the store's own mechanism — PostgreSQL's
``NOTIFY`` — or by a bounded wait)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from .models import FINISHED, JobRecord


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


class Outcomes:
    """Waiters for jobs to finish (``Store.wait_finished``), woken by the store when it
    changes a job (or hears that another process did). A wake-up only says "look again":
    the waiter re-reads the job, so a spurious one costs a read and a missed one cannot
    happen while the waiter is registered before it reads."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def notify(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def notify_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def wait_finished(
        self,
        read: Callable[[str], Awaitable[JobRecord | None]],
        job_id: str,
        timeout_s: float | None,
        *,
        recheck_s: tuple[float, float] | None = None,
    ) -> JobRecord | None:
        """``read(job_id)`` once it is finished (or unknown: ``None``), re-read at each
        wake-up; after ``timeout_s`` (``None``: no limit) the record as last read. ``recheck_s = (min, max)``
        also re-reads after a bounded wait that doubles from ``min`` to ``max``, for
        changes made where no wake-up reaches (another process's SQLite store)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        event = asyncio.Event()
        waiters = self._waiters.setdefault(job_id, set())
        waiters.add(event)
        recheck = recheck_s[0] if recheck_s is not None else None
        try:
            while True:
                event.clear()  # before the read: a change committed after it sets the event
                record = await read(job_id)
                if record is None or record.status in FINISHED:
                    return record
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return record
                wait = (
                    recheck
                    if remaining is None
                    else remaining
                    if recheck is None
                    else min(remaining, recheck)
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await event.wait()
                if recheck is not None and recheck_s is not None:
                    recheck = min(recheck_s[1], recheck * 2)
        finally:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(job_id, None)
