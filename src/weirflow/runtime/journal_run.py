"""Journaled calls in a row: a routine of a durable job makes its calls one after
another in one frame while items wait, each call still a step of its own in the
journal (its start before the handler runs, its end after), as the in-memory runner
does without a journal (``RoutineRunner._run_plain``).

One call per turn of the runner's loop (``_call_fast``) cost a turn of that loop (the
pause, lag and readiness checks, a coroutine) and a new ``Step`` per call; a run of
calls pays those once. When the journal keeps no ``Step`` past ``step_completed``
(``Journal.keeps_steps``, the durable journal's case), one ``Step`` is reset for each
call instead of made anew. ``JournaledCalls`` is a base class of ``RoutineRunner``:
the run is part of the runner, kept here as one concept.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .journal import Step
from .runner_part import RunnerPart

#: the journal's lag (``Journal.lagging``) is looked at every 16th call of a run: a lagging
#: journal is a bound on how far a job runs ahead of it (a few calls more make no
#: difference to it), and the look costs a call per step
LAG_CHECK_MASK = 15

if TYPE_CHECKING:
    from .activation import BoundActivation


class JournaledCalls(RunnerPart):
    """The journaled run of calls of a ``RoutineRunner``."""

    async def _run_journaled(self, act: BoundActivation, budget: int) -> int:
        """Calls in a row, in one frame, while items wait, with a journal: one slot, an
        async handler, no hook on handler starts or ends, no call a crash interrupted
        (those go one at a time through ``_call_fast``). Each call is a step: numbered,
        its start told to the journal before the handler runs, its end after, exactly as
        ``_call_fast`` does. Stops when the slot is empty, the job or the routine pauses
        or finishes, the journal lags (``Journal.lagging``, looked at every 16th call: the
        runner's loop waits for it), a call fails (handed to ``_call`` with its step, for
        the error policy), hooks are attached or removed, or after ``budget`` calls;
        returns how many it made."""
        job = self.job
        journal = job.journal
        assert journal is not None
        q = act.queues[0]
        if q.rerun_attempts:  # restored items carry their attempts and what they delivered
            await self._call_fast(act)
            return 1
        items = q.items
        fn = act.fn
        ctx = self.ctx
        ctx.attempt = 1
        wants_ctx = act.wants_ctx
        name, slot = self.name, q.name
        reuse = not journal.keeps_steps
        times = journal.reads_times
        step: Step | None = None
        failed: tuple[Any, Exception, Step] | None = None
        hooks = job.hook_set
        n = 0
        self.active = 1
        job.call_started()
        t0 = time.perf_counter()
        try:
            while True:
                item = q.take()
                n += 1
                self.seq += 1
                if step is None or not reuse:
                    step = Step(name, self.seq, 1, [(slot, item)])
                else:  # (the journal kept nothing of the last call's: Step.__init__, the fields that change)
                    step.seq = self.seq
                    step.consumed = [(slot, item)]
                    step.emitted = []
                    if times:  # (the last call's end: nothing ran since, so one clock read per call)
                        step.started_at = step.completed_at or time.time()
                    if step.final:  # (else ``call_completed`` took the last one as it was)
                        step.status = "running"
                        step.final = False
                        step.completed_at = None
                    step.emit_at = -1
                    if step.progress is not None:
                        step.progress, step.message = None, ""
                ctx.step = step
                try:
                    # (a journal may refuse the start: a ``CancelledError``, the item settles)
                    journal.step_started(job, step)
                    await (fn(item, ctx) if wants_ctx else fn(item))
                except asyncio.CancelledError:
                    self._cancelled(q, item)
                    raise
                except Exception as e:  # noqa: BLE001 - the error policy decides, in _call
                    failed = (item, e, step)
                    break
                q.settle(1, False)
                self.calls += 1
                # the step ends (RoutineRunner._step_done, inlined: no rerun here), told the
                # short way when the journal has one (``Journal.call_completed``)
                state = self.state
                if state or step.state or not journal.call_completed(job, step):
                    step.status = "completed"
                    step.final = True
                    if state:
                        step.state = dict(state)
                    elif step.state:
                        step.state = {}
                    step.completed_at = time.time()
                    journal.step_completed(job, step)
                if not items or n >= budget or job.finished or job.paused or self.paused:
                    break
                if job.hook_set is not hooks or (not n & LAG_CHECK_MASK and journal.lagging() is not None):
                    break
            ctx.step = None  # (no call runs: between two calls nothing else ran to see it)
        finally:
            self.active = 0
            job.call_ended()
            self.busy_s += time.perf_counter() - t0
        if failed is not None:
            self.calls += 1
            try:
                item, error, step = failed
                await self._call(act, [(q, item)], first_error=error, attempt=1, first_step=step)
            finally:  # the error's traceback holds this frame: leave no cycle behind
                failed = error = None  # type: ignore[assignment]
        return n
