"""Lanes: up to ``concurrency`` tasks of one routine that each make calls in a row while
items wait, as worker tasks over an ``asyncio.Queue`` do, instead of a task per call.

A task per call cost a task's creation, a ``Context``, the general call path and a wake-up
of the runner at every call's end: 16 routines' worth of ``await asyncio.sleep(0.001)``
handlers ran at 0.67-0.81 x of 16 plain asyncio workers per stage. ``Lanes`` is a base
class of ``RoutineRunner``: the lanes are part of the runner, kept here as one concept.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from .context import Context
from .gil import let_threads_in
from .runner_part import RunnerPart

if TYPE_CHECKING:
    from .activation import BoundActivation
    from .runner import RoutineRunner

#: handler calls a runner (or a lane) makes in a row before it yields the event loop to other tasks
FAIR_SHARE_CALLS = 100


class Lanes(RunnerPart):
    """The lanes of a ``RoutineRunner``."""

    def init_lanes(self) -> None:
        self.lanes = 0  # lanes running (``_lane``), each making at most one call at a time
        self.lane_waiters: deque[asyncio.Future[None]] = deque()  # of lanes with nothing to do

    def wake_lane(self) -> None:
        """Let one lane that waits for items look again (``SlotQueue.append`` calls this)."""
        waiters = self.lane_waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _lanes_fit(self, act: BoundActivation) -> bool:
        """Whether lanes may run this activation's calls: one async ``each`` activation,
        nothing watching handler starts or ends, no journal."""
        return (
            act.kind == "each"
            and act.is_async
            and len(self.acts) == 1
            and not self.watch_start
            and not self.job.hook_set.handler_end
            and self.job.journal is None
        )

    async def _lane(self, act: BoundActivation) -> None:
        """One of up to ``concurrency`` tasks of a routine that each make calls in a row
        while items wait (like a worker task over an ``asyncio.Queue``), instead of a task
        per call. A lane with nothing to do waits for an item; it ends when the job or
        the routine pauses or the lanes no longer fit (a hook, a journal), and the runner's
        task goes on from there. A failed call goes through ``_call`` (the error policy)."""
        job = self.job
        loop = job.loop
        q = act.queues[0]
        items = q.items
        fn = act.fn
        wants_ctx = act.wants_ctx
        me = cast("RoutineRunner", self)
        ctx = Context(me)
        waiters = self.lane_waiters
        streak = 0
        try:
            while True:
                if not items:
                    fut = loop.create_future()
                    waiters.append(fut)
                    await fut
                    continue
                if job.finished or not job.may_run(me) or not self._lanes_fit(act):
                    return
                item = q.take()
                if items and waiters:  # more wait: another lane may take the next one
                    self.wake_lane()
                self.active += 1
                job.call_started()
                t0 = time.perf_counter()
                try:
                    if wants_ctx:
                        await fn(item, ctx)
                    else:
                        await fn(item)
                except asyncio.CancelledError:
                    self.active -= 1
                    job.call_ended()
                    self._cancelled(q, item)
                    raise
                except Exception as e:  # noqa: BLE001 - the error policy decides, in _call
                    self.busy_s += time.perf_counter() - t0
                    self.calls += 1
                    await self._call(act, [(q, item)], first_error=e, counted=True)
                    continue
                self.busy_s += time.perf_counter() - t0
                self.calls += 1
                q.settle(1, False)
                self.active -= 1
                job.call_ended()
                if not items and self.active == 0:
                    self.wake()  # the routine may be idle now: the runner's task tells the tracker
                streak += 1
                if streak >= FAIR_SHARE_CALLS:  # calls that never wait must not starve the loop
                    streak = 0
                    let_threads_in()
                    await asyncio.sleep(0)
        finally:
            self.lanes -= 1
            self.wake()
