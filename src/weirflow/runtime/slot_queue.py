"""A bounded slot queue of one job, with its overflow policy and accounting.

Counters obey ``enqueued == processed + len(items) + in_flight + dead_lettered``
between any two awaits: every method that moves an item updates both sides
before it returns or suspends.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..errors import JobFinishedError, SlotFullError
from ..flow.policy import NEAR_FULL_RATIO, Overflow
from .results import QueueStats, made_from

if TYPE_CHECKING:
    from ..flow.graph import SlotSpec
    from .job import Job
    from .replay import Rerun
    from .runner import RoutineRunner


class SlotQueue:
    """Items waiting at one slot of one job."""

    __slots__ = (
        "_blocked_since",
        "_call_waits",
        "_gap",
        "_near",
        "_overflow_name",
        "block_timeout_s",
        "blocked_emitters",
        "blocked_s_done",
        "capacity",
        "dead_lettered",
        "enqueued",
        "fill_state",
        "high_water",
        "in_flight",
        "items",
        "job",
        "name",
        "overflow",
        "path",
        "processed",
        "putters",
        "rerun_attempts",
        "runner",
        "watched",
    )

    def __init__(self, job: Job, runner: RoutineRunner, name: str, spec: SlotSpec) -> None:
        self.job = job
        self.runner = runner
        self.name = name
        self.path = f"{runner.name}.{name}"
        self.capacity = spec.capacity
        self.overflow = spec.overflow
        self._overflow_name: str = spec.overflow.value  # (an enum's .value is a slow property)
        self.block_timeout_s = spec.block_timeout_s
        self.items: deque[Any] = deque()
        self.putters: deque[asyncio.Future[None]] = deque()
        self.enqueued = 0
        self.processed = 0
        self.in_flight = 0
        self.dead_lettered = 0
        self.high_water = 0
        self.blocked_emitters = 0
        self.blocked_s_done = 0.0
        self._blocked_since: dict[asyncio.Future[None], float] = {}
        self._call_waits: set[asyncio.Future[None]] = set()  # those of handler calls
        self._near = max(1, math.ceil(spec.capacity * NEAR_FULL_RATIO))
        # hysteresis for fill-state notifications: a slot hovering at a threshold does
        # not report every item; it leaves a state only ``_gap`` items below it
        self._gap = max(1, spec.capacity // 10)
        self.fill_state = "ok"
        self.watched = False  # a hook watches items arriving here (set by the job)
        # the interrupted calls (their next attempt) of the first items, restored from a
        # journal after a crash; empty otherwise
        self.rerun_attempts: deque[Rerun] = deque()

    #: whether threads use this queue too (``SharedSlotQueue``): its changes then take its lock
    shared = False

    # -- putting --------------------------------------------------------------

    def restore(self, items: list[Any], rerun_attempts: list[Any]) -> None:
        """Queue what a journal's replay found waiting here (before the job runs), with
        the attempts of the first ones, whose calls a crash interrupted."""
        self.items.extend(items)
        self.enqueued += len(items)
        self.high_water = max(self.high_water, len(self.items))
        self.rerun_attempts.extend(rerun_attempts)

    def has_room(self) -> bool:
        return len(self.items) < self.capacity and not self.putters

    def try_append(self, item: Any) -> bool:
        """Queue ``item`` if the slot has room now; whether it did."""
        if len(self.items) < self.capacity and not self.putters:
            self.append(item)
            return True
        return False

    def append(self, item: Any) -> None:
        """Queue ``item``; the caller checked ``has_room()`` (or the policy made room)."""
        items = self.items
        items.append(item)
        self.enqueued += 1
        n = len(items)
        if n > self.high_water:
            self.high_water = n
        if n == self._near or n == self.capacity:  # crossing a fill threshold
            self._fill_changed()
        runner = self.runner
        waiter = runner.waiter
        if waiter is not None:
            runner.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if runner.lane_waiters:
            runner.wake_lane()

    async def put(
        self, item: Any, timeout_s: float | None, parks_call: bool, *, of_input: bool = False
    ) -> bool:
        """Queue ``item`` according to the overflow policy.

        ``block`` waits for room (up to ``timeout_s``, then ``SlotFullError``);
        ``fail`` raises at once; the drop policies dead-letter an item. While it
        waits, a handler's call counts as parked (a safe point for ``pause``)
        when ``parks_call``. Returns whether ``item`` was queued (``False``: dropped);
        ``of_input``: ``item`` is a starting input (so marked if dead-lettered).
        """
        if self.has_room():
            self.append(item)
            return True
        overflow = self.overflow
        if overflow is Overflow.FAIL:
            raise SlotFullError(self.path, self.capacity)
        if overflow is Overflow.DROP_NEWEST:
            self.refuse(item, "dropped_newest", None, of_input=of_input)
            return False
        if overflow is Overflow.DROP_OLDEST:
            while len(self.items) >= self.capacity:
                old = self.items.popleft()
                if self.rerun_attempts:
                    self.rerun_attempts.popleft()
                self.dead_lettered += 1
                self.job.letters.add(self.path, old, "dropped_oldest", None, from_queue=True)
            self.append(item)
            return True
        await self._wait_for_room(timeout_s, parks_call)
        self.append(item)
        return True

    async def _wait_for_room(self, timeout_s: float | None, parks_call: bool) -> None:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        deadline = None if timeout_s is None else start + timeout_s
        job = self.job
        self.blocked_emitters += 1
        if parks_call:
            job.park(1)
        try:
            while True:
                if job.finished:
                    raise JobFinishedError(
                        f"job {job.id} is {job.status.value}; item for {self.path} not accepted"
                    )
                fut: asyncio.Future[None] = loop.create_future()
                self.putters.append(fut)
                self._blocked_since[fut] = time.monotonic()
                if parks_call:
                    self._call_waits.add(fut)
                try:
                    if deadline is None:
                        await fut
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise SlotFullError(self.path, self.capacity, time.monotonic() - start)
                        try:
                            async with asyncio.timeout(remaining):
                                await fut
                        except TimeoutError:
                            raise SlotFullError(self.path, self.capacity, time.monotonic() - start) from None
                except BaseException:
                    if fut in self.putters:
                        self.putters.remove(fut)
                    elif fut.done() and not fut.cancelled() and fut.exception() is None:
                        self.wake_putter()  # we were given room but leave: pass it on
                    raise
                finally:
                    self.blocked_s_done += time.monotonic() - self._blocked_since.pop(fut)
                    self._call_waits.discard(fut)
                if job.finished:  # woken with room, but the job ended before this ran
                    raise JobFinishedError(
                        f"job {job.id} is {job.status.value}; item for {self.path} not accepted"
                    )
                if len(self.items) < self.capacity:
                    return
        finally:
            self.blocked_emitters -= 1
            if parks_call:
                job.park(-1)

    def room_given(self) -> bool:
        """Whether an emitter was woken with room and has not gone on yet (it will)."""
        return any(fut.done() for fut in self._blocked_since)

    def calls_waiting(self) -> bool:
        """Whether a handler call waits here for room and has not been given it yet."""
        return any(not fut.done() for fut in self._call_waits)

    def calls_may_wait(self) -> bool:
        """Whether a handler call waits here for room or was just given it (one read: safe
        from a worker thread, where ``calls_waiting`` is not)."""
        return bool(self._call_waits)

    def wake_putter(self) -> None:
        while self.putters:
            fut = self.putters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def fail_putters(self, error: BaseException) -> None:
        """Wake every blocked emitter with ``error`` (the job ended)."""
        while self.putters:
            fut = self.putters.popleft()
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved: a cancelled emitter must not log "never retrieved"

    # -- taking ---------------------------------------------------------------

    def take(self) -> Any:
        """Hand the oldest item to a handler call (it becomes in flight)."""
        item = self.items.popleft()
        self.in_flight += 1
        if self.putters:
            self.wake_putter()
        n = len(self.items)
        if n == self._near - self._gap or n == self.capacity - self._gap:  # leaving a fill state
            self._fill_changed()
        return item

    def refuse(self, item: Any, reason: str, error: str | None, *, of_input: bool = False) -> None:
        """Count ``item`` as arriving here and dead-letter it at once (a drop policy, a
        hook's drop, a starting input a ``fail`` slot refused); ``of_input``: it is a
        starting input (a resumed job does not feed it again)."""
        self.enqueued += 1
        self.dead_lettered += 1
        self.job.letters.add(self.path, item, reason, error, of_input=of_input)

    def settle(self, n: int, dead: bool) -> None:
        """``n`` in-flight items finished: processed, or dead-lettered by the caller."""
        self.in_flight -= n
        if dead:
            self.dead_lettered += n
        else:
            self.processed += n

    def settle_dead(self, item: Any, reason: str, error: str | None) -> None:
        """One in-flight item did not finish: dead-letter it."""
        self.in_flight -= 1
        self.dead_lettered += 1
        self.job.letters.add(self.path, item, reason, error)

    def drain(self, reason: str, error: str | None) -> None:
        """Dead-letter every queued item (the job ended or no consumer can take them)."""
        self.rerun_attempts.clear()
        while self.items:
            item = self.items.popleft()
            self.dead_lettered += 1
            self.job.letters.add(self.path, item, reason, error, from_queue=True)
        self._fill_changed()

    # -- reporting ------------------------------------------------------------

    def _fill(self) -> str:
        n = len(self.items)
        if n >= self.capacity:
            return "full"
        if n >= self._near:
            return "near_full"
        return "ok"

    def _fill_changed(self) -> None:
        state = self._fill()
        if state != self.fill_state:
            self.fill_state = state
            self.job.queue_state_changed(self.path, state)

    def blocked_s(self) -> float:
        since = self._blocked_since
        if not since:
            return self.blocked_s_done
        now = time.monotonic()
        return self.blocked_s_done + sum(now - t for t in since.values())

    def stats(self, paused: bool) -> QueueStats:
        return made_from(QueueStats, self.stats_dict(paused))

    def stats_dict(self, paused: bool) -> dict[str, Any]:
        """``stats`` as a plain dict (the fields of ``QueueStats``): what the HTTP API and
        metrics read, without building the frozen dataclass (its ``__init__`` costs more
        than the numbers)."""
        items = self.items
        size = len(items)
        capacity = self.capacity
        if size >= capacity:
            state = "full"
        elif size >= self._near:
            state = "near_full"
        else:
            state = "paused" if paused else "ok"
        return {
            "slot": self.path,
            "size": size,
            "capacity": capacity,
            "usage": size / capacity,
            "high_water": self.high_water,
            "enqueued": self.enqueued,
            "processed": self.processed,
            "in_flight": self.in_flight,
            "dead_lettered": self.dead_lettered,
            "blocked_emitters": self.blocked_emitters,
            "blocked_s": self.blocked_s(),
            "state": state,
            "overflow": self._overflow_name,
            "paused": paused,
        }
