"""``Context``: what a handler sees of its job — emit, state, attempt, progress; and
``ThreadContext``, a worker thread's (``runtime.threads``)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .shared_queue import emit_from_thread

if TYPE_CHECKING:
    from ..flow.routine import Event
    from .journal import Step
    from .runner import RoutineRunner


class Context:
    """Passed to every handler call and to ``on_end``.

    ``emit`` is awaited in ``async def`` code and is a blocking call in plain
    ``def`` handlers (which run in the engine's thread pool). ``state`` is a dict
    private to this routine in this job.
    """

    __slots__ = ("_loop", "_loop_thread", "_runner", "attempt", "state", "step")

    def __init__(self, runner: RoutineRunner, attempt: int = 1) -> None:
        self._runner = runner
        self._loop = runner.job.loop
        self._loop_thread = runner.job.loop_thread
        self.state: dict[str, Any] = runner.state
        self.attempt = attempt
        self.step: Step | None = None  # the journal's record of the running call (set by the runner)

    @property
    def job_id(self) -> str:
        return self._runner.job.id

    @property
    def routine(self) -> str:
        """This routine's name in the flow."""
        return self._runner.name

    def emit(self, event: Event | str, item: Any) -> Any:
        """Send ``item`` on ``event`` to every connected slot (and the outputs).

        Returns an awaitable on the event loop; blocks until delivered in a
        worker thread. Raises ``SlotFullError`` when a ``fail`` slot is full or a
        ``block`` slot stays full past its ``block_timeout_s``.
        """
        if threading.get_ident() == self._loop_thread:
            return self._runner.emit(event, item, self)
        emit_from_thread(self._runner, event, item, self)
        return None

    def progress(self, percent: float, message: str = "") -> None:
        """Report progress of the current call (0-100) with a message; a durable job
        records it on the call's step."""
        value = (max(0.0, min(100.0, float(percent))), str(message))
        self._runner.progress = value
        step = self.step
        if step is not None:
            step.progress, step.message = value
            job = self._runner.job
            if threading.get_ident() == self._loop_thread:
                job.step_progress(step)
            else:
                self._loop.call_soon_threadsafe(job.step_progress, step)


class ThreadContext(Context):
    """``Context`` of a worker: an emit into a route whose slots are all shared goes straight
    in (``emit_from_thread``'s first case, without its call: every item's path)."""

    __slots__ = ()

    def emit(self, event: Event | str, item: Any) -> Any:
        runner = self._runner
        direct = runner.thread_routes.get(event if type(event) is str else event.name)  # type: ignore[union-attr]
        if direct is not None and direct[0].plain and threading.get_ident() != self._loop_thread:
            if runner.job.finished:
                return super().emit(event, item)  # (refused there)
            for q in direct[1]:
                q.put_from_thread(item, runner)
            out = direct[0].output
            if out is not None:
                out.append(item)
            return None
        return super().emit(event, item)
