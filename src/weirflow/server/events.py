"""Per-job event logs fed by a runtime hook, for the live event stream.

``EventHub`` is a ``wf.Hooks`` registered on the server's engine. Every status
change (with the pause reason: ``manual``, ``breakpoint:<id>``...), queue fill
change (``ok``, ``near_full``, ``full``) and dead letter of a job is appended to
that job's ``EventLog`` with an id that increases by one per event. When the
job's result is ready a last ``end`` event is appended and the log is closed.

A log keeps the last ``capacity`` events (a ring buffer); a reader asking for
events after an id that has already been dropped is told how many it missed.
Readers wait on a future that the next append resolves — no polling.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from ..runtime.hooks import Hooks
from ..runtime.job import Job
from ..runtime.results import DeadLetter, JobStatus


class LoggedEvent(NamedTuple):
    """One event of a job: ``kind`` is ``status``, ``queue``, ``dead_letter`` or ``end``."""

    id: int
    kind: str
    data: dict[str, Any]


class EventLog:
    """The recent events of one job. Must be used on the engine's event loop."""

    def __init__(self, capacity: int) -> None:
        self.events: deque[LoggedEvent] = deque(maxlen=capacity)
        self.last_id = 0
        self.closed = False
        self._waiters: list[asyncio.Future[None]] = []

    def append(self, kind: str, data: dict[str, Any]) -> None:
        if self.closed:
            return
        self.last_id += 1
        self.events.append(LoggedEvent(self.last_id, kind, data))
        if self._waiters:
            self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def since(self, after: int) -> tuple[int, list[LoggedEvent]]:
        """``(missed, events)``: the events with ``id > after`` still kept, and how many
        between ``after`` and the oldest kept one were already dropped."""
        if after > self.last_id:  # not an id of this log: replay what is kept
            after = 0
        first = self.events[0].id if self.events else self.last_id + 1
        missed = max(0, first - after - 1)
        wanted = self.last_id - max(after, first - 1)
        # live readers want the last few events: walk from the newest end, not the oldest
        events = list(itertools.islice(reversed(self.events), wanted))
        events.reverse()
        return missed, events

    async def wait(self, after: int, timeout_s: float) -> bool:
        """Wait until an event with ``id > after`` exists or the log closes; ``False`` on timeout."""
        if self.last_id > after or self.closed:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(timeout_s):
                await fut
        except TimeoutError:
            return False
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        return True


class EventHub(Hooks):
    """Feeds one ``EventLog`` per job from the runtime's notification hooks.

    ``on_finished(job)`` is called once a job's result is ready (after its last
    dead letter), on the engine's loop.
    """

    def __init__(self, capacity: int, on_finished: Callable[[Job], None] | None = None) -> None:
        self.capacity = capacity
        self.logs: dict[str, EventLog] = {}
        self.on_finished = on_finished
        self._ending: dict[str, Job] = {}  # finished jobs whose result is not ready yet
        self.closed = False

    def log(self, job_id: str) -> EventLog:
        log = self.logs.get(job_id)
        if log is None:
            log = self.logs[job_id] = EventLog(self.capacity)
            if self.closed:
                log.close()
        return log

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        """Add an event of another source (e.g. the debugger's breakpoint hits) to a job's log."""
        self.log(job_id).append(kind, data)

    def forget(self, job_id: str) -> None:
        log = self.logs.pop(job_id, None)
        if log is not None:
            log.close()

    def close(self) -> None:
        """Close every log, so that every stream ends (the server is shutting down)."""
        self.closed = True
        for log in self.logs.values():
            log.close()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Let finished jobs log their ``end`` event (up to ``timeout_s``), then ``close()``."""
        if self._ending:
            waits = [asyncio.ensure_future(job.wait()) for job in self._ending.values()]
            _, pending = await asyncio.wait(waits, timeout=timeout_s)
            for task in pending:
                task.cancel()
        self.close()

    # -- hooks ------------------------------------------------------------------------

    def on_job_status(self, job: Job, status: JobStatus, reason: str | None) -> None:
        self.log(job.id).append("status", {"status": status.value, "reason": reason, "at": time.time()})
        if status.finished and job.id not in self._ending:  # (a fatal hook may fail a completed job)
            self._ending[job.id] = job
            # a callback, not a task awaiting the result: one per job started, on the hot path
            job.add_done_callback(self._job_done)

    def on_queue_state(self, job: Job, slot: str, state: str) -> None:
        # called on every fill-state change: keep it cheap
        log = self.logs.get(job.id) or self.log(job.id)
        log.append("queue", {"slot": slot, "state": state, "at": time.time()})

    def on_dead_letter(self, job: Job, letter: DeadLetter) -> None:
        self.log(job.id).append("dead_letter", letter.to_dict())

    def _job_done(self, job: Job) -> None:
        self._ending.pop(job.id, None)
        result = job.result
        assert result is not None
        log = self.log(job.id)
        log.append("end", {"status": result.status.value, "error": result.error, "at": time.time()})
        log.close()
        if self.on_finished is not None:
            self.on_finished(job)
