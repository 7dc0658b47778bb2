"""Handler calls that outlive their job's end, and waiting for them to end.

A job's end cancels its calls on the loop, but a plain ``def`` call running on a thread
(the engine's pool, or a routine's worker threads) cannot be interrupted: it runs on to
its end, and its result is dropped. An ``executor = "process"`` call is killed with its
child, which its thread sees as the child's death. Until those threads return, an attempt
of the job's work is still running: a durable worker must not report the job (its next
attempt would run beside the old one) before ``Job.wait_calls_ended`` says so.

``Lingering`` is a base class of ``Job``; ``call_in_pool`` runs one call in the engine's
pool and counts it as lingering if its task is cancelled while it runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import Job
    from .results import JobResult


class Lingering:
    """Counting the calls of a finished job that still run off the loop."""

    # provided by Job
    loop: asyncio.AbstractEventLoop
    _done: asyncio.Future[JobResult]

    if TYPE_CHECKING:

        async def wait_closed(self) -> None: ...

    def init_lingering(self) -> None:
        """No call lingers (called by ``Job.__init__``)."""
        #: handler calls cancelled at the job's end that still run on a thread (on the loop)
        self.lingering = 0
        self._lingering_waiters: list[asyncio.Future[None]] = []

    def call_lingers(self, n: int = 1) -> None:
        """On the loop: ``n`` calls go on running after their cancellation."""
        self.lingering += n

    def lingering_ended(self, n: int = 1) -> None:
        """On the loop: ``n`` lingering calls returned (their thread is free)."""
        self.lingering -= n
        if self.lingering <= 0:
            waiters, self._lingering_waiters = self._lingering_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def post_lingering_ended(self, n: int = 1) -> None:
        """From any thread: ``lingering_ended`` on the loop (nothing if the loop is closed:
        nobody is left to wait)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.lingering_ended, n)

    def outlives(self, call: concurrent.futures.Future[Any]) -> None:
        """On the loop: ``call`` (running in a pool) goes on after its task was cancelled;
        it lingers until it is done."""
        self.lingering += 1
        call.add_done_callback(lambda _: self.post_lingering_ended())

    async def wait_calls_ended(self, timeout_s: float | None = None) -> bool:
        """Wait until the job has finished and none of its handler calls is still running
        anywhere: cancelled calls on the loop have unwound, threads running a plain ``def``
        call have returned, and children running an ``executor = "process"`` call were
        killed (and are dead). ``False`` if that is not so within ``timeout_s``; event
        driven (the last thread to return wakes the waiter)."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._done)
                await self.wait_closed()
                while self.lingering > 0:
                    fut: asyncio.Future[None] = self.loop.create_future()
                    self._lingering_waiters.append(fut)
                    try:
                        await fut
                    finally:
                        if fut in self._lingering_waiters:
                            self._lingering_waiters.remove(fut)
        except TimeoutError:
            return False
        return True


async def call_in_pool(
    job: Job, fn: Callable[..., Any], *args: Any, on_cancel: Callable[[], None] | None = None
) -> Any:
    """``loop.run_in_executor(job.engine.pool, fn, *args)``; if the task awaiting it is
    cancelled while ``fn`` runs (the job ended), ``on_cancel`` is called (to stop what
    ``fn`` waits for: a child process) and the call lingers until ``fn`` returns."""
    call = job.engine.pool.submit(fn, *args)
    try:
        return await asyncio.wrap_future(call, loop=job.loop)
    except asyncio.CancelledError:
        if not call.cancel() and not call.done():  # it runs: it cannot be cancelled
            if on_cancel is not None:
                on_cancel()
            job.outlives(call)
        raise
