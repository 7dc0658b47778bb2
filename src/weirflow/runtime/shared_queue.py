"""``SharedSlotQueue``: a slot queue that worker threads use as well as the event loop.

A slot consumed by a routine that runs on threads of its own, or fed by one, is
shared: every change of its items and counters happens under its lock (the
consuming runner's), so ``stats()`` (which takes it too) sees the accounting
invariant hold at every moment, and a room check and the append that follows are
one step (a slot never holds more than its capacity). Threads append without the
loop while the slot has room and wait on a condition of that lock while it is full;
the loop's emitters wait on futures as for any slot. What only the loop may do
(hook calls, dead-letter records, futures) is handed to it with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from ..errors import JobFinishedError, SlotFullError, WeirflowError
from ..flow.policy import Overflow
from .slot_queue import SlotQueue

if TYPE_CHECKING:
    from ..flow.graph import SlotSpec
    from ..flow.routine import Event
    from .context import Context
    from .job import Job
    from .runner import RoutineRunner


class Waiters:
    """Threads waiting under a lock until another thread lets them go.

    ``threading.Condition`` does the same, but its ``notify`` costs a deque and two
    lock calls even when every waiter was already notified; here a wake with nobody
    left to wake is one list check, which the data path does at every item.
    """

    __slots__ = ("_lock", "threads")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.threads: list[Any] = []  # one lock per waiting thread, not yet let go

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait (the lock held on entry and on return); ``False`` if ``timeout_s`` passed."""
        waiter = threading.Lock()
        waiter.acquire()
        self.threads.append(waiter)
        self._lock.release()
        try:
            got = waiter.acquire(True, -1 if timeout_s is None else max(0.0, timeout_s))
        finally:
            self._lock.acquire()
        if not got:
            try:
                self.threads.remove(waiter)
            except ValueError:  # let go just as the wait timed out
                got = True
        return got

    def notify(self) -> None:
        if self.threads:
            self.threads.pop(0).release()

    def notify_all(self) -> None:
        waiting, self.threads = self.threads, []
        for waiter in waiting:
            waiter.release()


class SharedSlotQueue(SlotQueue):
    """A slot queue whose changes take ``lock``; threads put with ``put_from_thread``."""

    __slots__ = (
        "_leave_full",
        "_leave_near",
        "_room_mark",
        "_wake_posted",
        "lock",
        "loop",
        "loop_thread",
        "room",
        "waiting",
    )

    shared = True

    def __init__(
        self, job: Job, runner: RoutineRunner, name: str, spec: SlotSpec, lock: threading.Lock
    ) -> None:
        super().__init__(job, runner, name, spec)
        self.lock = lock
        self.room = Waiters(lock)  # threads waiting for room
        self.waiting = 0  # threads in put_from_thread waiting for room
        self.loop = job.loop
        self.loop_thread = job.loop_thread
        # blocked emitters are woken once the slot has drained this far (or its consumer
        # stops), not at every item taken: one wake-up then lets a run of items in
        self._room_mark = spec.capacity - max(1, spec.capacity // 4)
        self._wake_posted = False  # a wake-up of the loop's putters is on its way
        # the sizes at which a take leaves the near-full and the full state (``take_locked``)
        self._leave_near = self._near - self._gap
        self._leave_full = self.capacity - self._gap

    # -- putting (caller holds the lock for the ``_locked`` methods) ------------------

    def _has_room_locked(self) -> bool:
        return len(self.items) < self.capacity and not self.putters and not self.waiting

    def has_room(self) -> bool:
        with self.lock:
            return self._has_room_locked()

    def _append_locked(self, item: Any) -> None:
        if self.job.finished:
            raise JobFinishedError(
                f"job {self.job.id} is {self.job.status.value}; item for {self.path} refused"
            )
        items = self.items
        items.append(item)
        self.enqueued += 1
        n = len(items)
        if n > self.high_water:
            self.high_water = n
        if n == self._near or n == self.capacity:
            self._post_fill()
        self.runner.on_item()

    def append(self, item: Any) -> None:
        with self.lock:
            self._append_locked(item)

    def try_append(self, item: Any) -> bool:
        with self.lock:
            if self._has_room_locked():
                self._append_locked(item)
                return True
            return False

    def refuse(
        self, item: Any, reason: str, error: str | None, *, of_input: bool = False
    ) -> None:  # on the loop
        with self.lock:
            self.enqueued += 1
            self.dead_lettered += 1
        self.job.letters.add(self.path, item, reason, error, of_input=of_input)

    async def put(
        self, item: Any, timeout_s: float | None, parks_call: bool, *, of_input: bool = False
    ) -> bool:
        """``SlotQueue.put`` on the loop, with the room check and the append under the lock.

        A thread's put handed to the loop may run after the job ended: it is refused
        before any item is dropped (the end-of-job drain dead-letters what is queued)."""
        job = self.job
        if job.finished:
            raise JobFinishedError(f"job {job.id} is {job.status.value}; item for {self.path} refused")
        if self.try_append(item):
            return True
        overflow = self.overflow
        if overflow is Overflow.FAIL:
            raise SlotFullError(self.path, self.capacity)
        if overflow is Overflow.DROP_NEWEST:
            self.refuse(item, "dropped_newest", None, of_input=of_input)
            return False
        if overflow is Overflow.DROP_OLDEST:
            dropped = []
            try:
                with self.lock:
                    while len(self.items) >= self.capacity:
                        dropped.append(self.items.popleft())
                        if self.rerun_attempts:
                            self.rerun_attempts.popleft()
                        self.dead_lettered += 1
                    self._append_locked(item)
            finally:  # every item counted as dead-lettered gets its letter, whatever raised
                for old in dropped:  # (outside the lock: dead-letter hooks may read stats)
                    job.letters.add(self.path, old, "dropped_oldest", None, from_queue=True)
            return True
        while True:
            await self._wait_for_room(timeout_s, parks_call)
            with self.lock:  # woken first in line: the room is ours unless a thread took it
                if len(self.items) < self.capacity:
                    self._append_locked(item)
                    return True

    def put_from_thread(self, item: Any, parker: RoutineRunner) -> None:
        """Queue ``item`` from a worker thread: at once while there is room; a ``block`` slot
        waits (``parker`` counts the wait as a safe point for ``pause``), a ``fail`` slot
        raises ``SlotFullError``; a drop policy hands the put to the loop."""
        with self.lock:
            items = self.items
            if len(items) < self.capacity and not self.putters and not self.waiting:
                if self.job.finished:
                    self._append_locked(item)  # raises
                items.append(item)  # _append_locked, inlined: this is every item's path
                self.enqueued += 1
                n = len(items)
                if n > self.high_water:
                    self.high_water = n
                if n == self._near or n == self.capacity:
                    self._post_fill()
                self.runner.on_item()
                return
            overflow = self.overflow
            if overflow is Overflow.FAIL:
                raise SlotFullError(self.path, self.capacity)
        if overflow is not Overflow.BLOCK:  # drop policies: dead letters are the loop's
            asyncio.run_coroutine_threadsafe(self.put(item, None, True), self.loop).result()
            return
        timeout_s = self.block_timeout_s
        start = time.monotonic()
        deadline = None if timeout_s is None else start + timeout_s
        parker.park_from_thread(1)
        try:
            with self.lock:
                self.waiting += 1
                self.blocked_emitters += 1
                try:
                    while len(self.items) >= self.capacity or self.putters:
                        job = self.job
                        if job.finished:
                            raise JobFinishedError(
                                f"job {job.id} is {job.status.value}; item for {self.path} not accepted"
                            )
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise SlotFullError(self.path, self.capacity, time.monotonic() - start)
                        if self.putters and len(self.items) < self.capacity:
                            # room, and the loop's emitters first in line: they queued
                            # because this thread waited (``_has_room_locked``), so no take
                            # may come to wake them; hand them the room, or both would wait
                            # for each other with the slot empty
                            self._wake_putters_locked()
                        self.room.wait(remaining)
                finally:
                    self.waiting -= 1
                    self.blocked_emitters -= 1
                    self.blocked_s_done += time.monotonic() - start
                self._append_locked(item)
        finally:
            parker.park_from_thread(-1)

    def append_run(self, items: list[Any], start: int) -> int:
        """Queue ``items[start:]``, in order, as far as there is room, under one lock (the
        starting inputs: ``Inputs.feed``); how many. None while emitters wait for room
        (they are first in line) or the job has ended."""
        with self.lock:
            room = self.capacity - len(self.items)
            if room <= 0 or self.putters or self.waiting or self.job.finished:
                return 0
            run = items[start : start + room]
            self._extend_locked(run)
            return len(run)

    def put_all_from_thread(self, items: list[Any]) -> bool:
        """Queue every one of ``items`` from a worker thread, in order, under one lock, if
        they all fit now and nothing waits for room (``put_from_thread``'s fast path for a
        whole batch: a process request's emits); ``False``, with nothing queued, if not."""
        with self.lock:
            fits = len(self.items) + len(items) <= self.capacity
            if not fits or self.putters or self.waiting or self.job.finished:
                return False
            self._extend_locked(items)
            return True

    def _extend_locked(self, run: list[Any]) -> None:
        """Queue ``run``, which fits (lock held): the counts, the fill state, the consumer
        told (``append_run``, ``put_all_from_thread``)."""
        queued = self.items
        before = len(queued)
        queued.extend(run)
        k = len(run)
        self.enqueued += k
        n = before + k
        if n > self.high_water:
            self.high_water = n
        if before < self._near <= n or n == self.capacity:
            self._post_fill()
        runner = self.runner
        for _ in range(min(k, runner.concurrency)):
            runner.on_item()

    def room_given(self) -> bool:
        """``SlotQueue.room_given``, and: a thread waits while there is room (it is about to
        go on), or a wake-up of the loop's emitters is on its way."""
        with self.lock:
            thread_goes_on = bool(self.waiting) and len(self.items) < self.capacity
            return thread_goes_on or self._wake_posted or super().room_given()

    def calls_waiting(self) -> bool:
        """``SlotQueue.calls_waiting``, or a worker thread's call waits here (a thread that
        waits is always a handler call's emit)."""
        return bool(self.waiting) or super().calls_waiting()

    def calls_may_wait(self) -> bool:
        return bool(self.waiting) or super().calls_may_wait()

    def wake_putter(self) -> None:  # on the loop
        with self.lock:
            self._wake_posted = False
            room = len(self.items) < self.capacity
        if room:
            super().wake_putter()

    def fail_putters(self, error: BaseException) -> None:
        super().fail_putters(error)
        with self.lock:
            self.room.notify_all()

    # -- taking ------------------------------------------------------------------------

    def take_locked(self) -> Any:
        item = self.items.popleft()
        self.in_flight += 1
        n = len(self.items)
        if n <= self._room_mark:
            self._wake_room_locked()
        if n == self._leave_near or n == self._leave_full:
            self._post_fill()
        return item

    def untake_locked(self, items: list[Any]) -> None:
        """Put ``items``, taken last and not used, back at the front, in order."""
        for item in reversed(items):
            self.items.appendleft(item)
        self.in_flight -= len(items)

    def take(self) -> Any:
        with self.lock:
            return self.take_locked()

    def _wake_room_locked(self) -> None:
        """Let blocked emitters in (threads at once; the loop's through the loop)."""
        if self.waiting:
            self.room.notify_all()
        if self.putters:
            self._wake_putters_locked()

    def _wake_putters_locked(self) -> None:
        """Let the first of the loop's blocked emitters in (through the loop from a thread)."""
        if threading.get_ident() == self.loop_thread:
            SlotQueue.wake_putter(self)
        elif not self._wake_posted:
            self._wake_posted = True
            self.loop.call_soon_threadsafe(self.wake_putter)

    def consumer_stopped_locked(self) -> None:
        """The consumer stops taking for now: blocked emitters may use what room there is."""
        if len(self.items) < self.capacity:
            self._wake_room_locked()

    def consumer_stopped(self) -> None:
        """``consumer_stopped_locked`` from the loop's runner, as it waits: blocked emitters
        are woken only once the slot drained to ``_room_mark``, so a consumer that stops
        above it (a join waiting for its other slot) must let them in, or an emitter that
        would feed that other slot next waits for room it already has."""
        if self.waiting or self.putters:
            with self.lock:
                self.consumer_stopped_locked()

    def settle(self, n: int, dead: bool) -> None:
        with self.lock:
            self.in_flight -= n
            if dead:
                self.dead_lettered += n
            else:
                self.processed += n

    def settle_dead(self, item: Any, reason: str, error: str | None) -> None:  # on the loop
        with self.lock:
            self.in_flight -= 1
            self.dead_lettered += 1
        self.job.letters.add(self.path, item, reason, error)

    def passed_through_locked(self, n: int) -> None:
        """``n`` items arrived here and were processed without being queued: a process
        chain ran this slot's routine on them inside one child request
        (``process_chain.Chain``)."""
        self.enqueued += n
        self.processed += n

    def settle_locked(self, n: int, dead: bool) -> None:
        self.in_flight -= n
        if dead:
            self.dead_lettered += n
        else:
            self.processed += n

    def drain(self, reason: str, error: str | None) -> None:
        with self.lock:
            self.rerun_attempts.clear()
            items = list(self.items)
            self.items.clear()
            self.dead_lettered += len(items)
            self.room.notify_all()
        for item in items:
            self.job.letters.add(self.path, item, reason, error, from_queue=True)
        self._fill_changed()

    # -- reporting -----------------------------------------------------------------------

    def _post_fill(self) -> None:  # lock held: the hooks run after it is let go
        if threading.get_ident() == self.loop_thread:
            self.loop.call_soon(self._fill_changed)
        else:
            self.loop.call_soon_threadsafe(self._fill_changed)

    def _fill_changed(self) -> None:  # on the loop: hooks are called there
        with self.lock:
            state = self._fill()
            changed = state != self.fill_state
            self.fill_state = state
        if changed:
            self.job.queue_state_changed(self.path, state)

    def stats_dict(self, paused: bool) -> dict[str, Any]:
        with self.lock:
            return super().stats_dict(paused)


def emit_from_thread(runner: RoutineRunner, event: Event | str, item: Any, ctx: Context) -> None:
    """``ctx.emit`` in a worker thread: straight into shared slots with room, through the
    loop where hooks or a journal must see the item (``delivery.Route``)."""
    name = event if type(event) is str else event.name  # type: ignore[union-attr]
    direct = runner.thread_routes.get(name)
    if direct is not None:
        known, queues = direct
        if known.plain and not runner.job.finished:
            for q in queues:
                q.put_from_thread(item, runner)
            if known.output is not None:
                known.output.append(item)
            return
    route = runner.routes.get(name)
    if route is None:
        if runner.job.finished:  # (a released job's runners have no routes left)
            raise JobFinishedError(f"job {runner.job.id} is {runner.job.status.value}; emit refused")
        raise WeirflowError(
            f"routine {runner.name!r} has no event {name!r} (events: {', '.join(runner.routes) or 'none'})"
        )
    job = runner.job
    if job.finished:
        raise JobFinishedError(f"job {job.id} is {job.status.value}; emit refused")
    shared = direct is not None or all(c.queue.shared for c in route.connections)
    if direct is None and shared:
        # remembered: whether every slot is shared does not change; ``plain`` may (hooks)
        queues = tuple(cast(SharedSlotQueue, c.queue) for c in route.connections)
        runner.thread_routes[name] = (route, queues)
    if route.plain and shared:
        for c in route.connections:
            c.queue.put_from_thread(item, runner)  # type: ignore[attr-defined]
        if route.output is not None:
            route.output.append(item)
        return

    async def on_loop() -> None:  # (the job may end before this runs: emit checks there)
        await runner.emit(event, item, ctx)

    asyncio.run_coroutine_threadsafe(on_loop(), job.loop).result()
