"""Pausing a job at safe points: which handler calls are running and which wait at a
safe point (held by a hook, waiting for room, backing off), ``pause``/``resume``, a
debugger's step (routines let run while the job stays paused), and pausing one routine.

``Pausing`` is a base class of ``Job``: the pause state is part of the job, kept here
because it is one concept of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn

from ..errors import JobTimeoutError, NotPausedError
from .results import JobStatus, PausePoint, QueueStats, ResumeReport, fill_warnings

if TYPE_CHECKING:
    from .completion import Tracker
    from .runner import RoutineRunner
    from .threads import ThreadRunner


class Pausing:
    """The pause state and safe-point counting of a ``Job``."""

    # provided by Job
    id: str
    loop: asyncio.AbstractEventLoop
    finished: bool
    tracker: Tracker
    _thread_runners: list[ThreadRunner]

    if TYPE_CHECKING:

        def refuse(self, what: str) -> NoReturn: ...
        def runner(self, routine: str) -> RoutineRunner: ...
        def queues(self) -> dict[str, QueueStats]: ...
        def _set_status(self, status: JobStatus, reason: str | None) -> str | None: ...

    def init_pausing(self) -> None:
        """The state of a job that has not been paused (called by ``Job.__init__``)."""
        self.paused = False
        self._stepping: set[str] = set()  # routines allowed to run while the job is paused
        self.pause_reason: str | None = None
        self.paused_at: float | None = None
        self._resumed: asyncio.Future[None] = self.loop.create_future()
        self._resumed.set_result(None)
        #: a done future: what a routine that was never paused has as its ``resumed``
        self.done_future = self._resumed
        self._running = 0
        self._parked = 0
        self._quiet_waiters: list[asyncio.Future[None]] = []

    def park(self, n: int) -> None:
        """A handler call waits at a safe point (``n`` = 1: held by a hook, waiting for
        room, backing off) or goes on (-1)."""
        self._parked += n
        if n > 0:
            self.wake_quiet()
            if self._stepping and self.paused:
                # a call stepped past a breakpoint may now wait for room: wake the paused
                # runners so that the consumer of that slot can make it (``may_run``)
                self.wake_paused()

    def call_started(self) -> None:
        """A handler call (or ``on_end``) starts running: it is not at a safe point."""
        self._running += 1

    def call_ended(self) -> None:
        """A handler call ended: a ``pause()`` waiting for the job to go quiet may return."""
        self._running -= 1
        if self._quiet_waiters:
            self.wake_quiet()

    def unparked(self) -> int:
        """Handler calls running and not at a safe point (on the loop and on worker threads)."""
        n = self._running - self._parked
        for r in self._thread_runners:
            n += r.unparked_calls()
        return n

    def quiet_waiter(self) -> asyncio.Future[None]:
        """A future set at the next moment every running call is at a safe point (or the
        job finished); ``drop_quiet_waiter`` it if it is not awaited to the end."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._quiet_waiters.append(fut)
        return fut

    def drop_quiet_waiter(self, fut: asyncio.Future[None]) -> None:
        if fut in self._quiet_waiters:
            self._quiet_waiters.remove(fut)

    def quiet_wanted(self) -> bool:
        """A ``pause()`` (or a debugger step) waits for the running calls to reach a safe point."""
        return bool(self._quiet_waiters)

    def wake_quiet(self) -> None:
        """Let a waiting ``pause()`` return if every running call is at a safe point."""
        if self._quiet_waiters and (self.finished or self.unparked() <= 0):
            waiters, self._quiet_waiters = self._quiet_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def wait_resumed(self, runner: RoutineRunner | None, parked: bool) -> None:
        if parked:
            self.park(1)
        try:
            while not self.finished:
                if runner is None:
                    if not self.paused:
                        return
                    fut = self._resumed
                elif self.may_run(runner):
                    return
                elif self.paused and not self._allowed(runner):
                    fut = self._resumed
                else:
                    fut = runner.resumed
                await asyncio.shield(fut)
        finally:
            if parked:
                self.park(-1)

    def request_pause(self, reason: str = "manual") -> None:
        """Stop starting handler calls (from a hook or a thread on the loop); does not wait."""
        if self.finished:
            self.refuse("pause")
        if self.paused:
            if reason != self.pause_reason:  # e.g. a breakpoint hit while paused: report it
                self.pause_reason = reason
                self._set_status(JobStatus.PAUSED, reason)
            return
        self.paused = True
        self.pause_reason = reason
        self.paused_at = time.time()
        self._resumed = self.loop.create_future()
        self._set_status(JobStatus.PAUSED, reason)

    async def pause(self, reason: str = "manual", *, timeout_s: float | None = None) -> PausePoint:
        """Pause at a safe point: no new handler calls start; running ones finish (or wait
        at an emit into a full slot). Emits and sends keep enqueueing until a slot is full,
        then wait — nothing is dropped. Returns a snapshot of every slot. If running calls
        have not reached a safe point within ``timeout_s``, the job stays paused and
        ``JobTimeoutError`` is raised."""
        self.request_pause(reason)
        try:
            async with asyncio.timeout(timeout_s):
                while not self.finished and self.unparked() > 0:
                    fut: asyncio.Future[None] = self.loop.create_future()
                    self._quiet_waiters.append(fut)
                    await fut
        except TimeoutError:
            raise JobTimeoutError(
                f"job {self.id} is paused but {self.unparked()} call(s) still running after {timeout_s}s"
            ) from None
        return PausePoint(
            at=self.paused_at or time.time(), reason=self.pause_reason or reason, queues=self.queues()
        )

    async def resume(self) -> ResumeReport:
        """Continue; the report's ``warnings`` name every slot that is full or near full."""
        if self.finished:
            self.refuse("resume")
        if not self.paused:
            raise NotPausedError(f"job {self.id} is not paused")
        paused_s = time.time() - (self.paused_at or time.time())
        snapshot = self.queues()
        self.paused = False
        self._stepping = set()
        self.pause_reason = None
        self.paused_at = None
        self._set_status(JobStatus.RUNNING, None)
        self._resumed.set_result(None)
        self.tracker.check_all()
        return ResumeReport(paused_s=paused_s, warnings=fill_warnings(snapshot), queues=snapshot)

    def allow_while_paused(self, routines: Iterable[str]) -> None:
        """Let these routines start calls while the job stays paused (a debugger step);
        an empty set restores the full pause."""
        names = set(routines)
        for name in names:
            self.runner(name)
        self._stepping = names
        if self.paused and names:
            # wake the waiting runners: the allowed ones run, the others wait again
            self.wake_paused()

    def may_run(self, runner: RoutineRunner) -> bool:
        """Whether ``runner`` may start a call now: its routine is not paused, and the job
        is not paused or lets it run while paused (``allow_while_paused``, or it makes room).
        """
        return not runner.paused and (not self.paused or self._allowed(runner))

    def _allowed(self, runner: RoutineRunner) -> bool:
        # during a step, the consumer of a slot where a call waits for room may take from
        # it: otherwise a stepped emit into a full slot of a paused routine never returns
        stepping = self._stepping
        return runner.name in stepping or (bool(stepping) and runner.makes_room())

    def wake_paused(self) -> None:
        """Wake the runners waiting for the pause to end; those still held wait again."""
        old, self._resumed = self._resumed, self.loop.create_future()
        old.set_result(None)
        for runner in self._thread_runners:
            runner.wake()

    def pause_routine(self, routine: str) -> None:
        """Stop starting calls of one routine; the rest runs until backpressure reaches it."""
        runner = self.runner(routine)
        if not runner.paused:
            runner.paused = True
            runner.resumed = self.loop.create_future()

    def resume_routine(self, routine: str) -> None:
        runner = self.runner(routine)
        if runner.paused:
            runner.paused = False
            runner.resumed.set_result(None)
            runner.wake()
