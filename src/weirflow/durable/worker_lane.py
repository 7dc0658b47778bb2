"""The worker's lane for simple durable jobs: a job of a one-routine flow whose routine
takes one item with an async ``each`` handler runs without a runtime ``Job``.

A runtime ``Job`` (its slot queues, runner task, completion tracker, routes, result and
statistics) was most of a worker's CPU for such a job. ``LaneJob`` makes the same calls
to the worker's journals (the durable journal, the step rows) in the same order with the
same ``Step`` records, and ends with the same ``JobResult``, as ``Job`` does on its
journaled call path (``RoutineRunner._call_fast`` and ``_call``): the handler sees the
same ``Context`` (``job_id``, ``attempt``, ``routine``, ``state``, ``emit``,
``progress``); a failure takes the routine's error policy (retries with backoff,
``Retry``, ``give_up_on``, dead letter or ``fail_job``); ``cancel`` (a lost lease, the
job timeout, the shutdown) records the job's end, then cancels the call, which
dead-letters its item. ``tests/durable/test_worker_lane.py`` runs each case both ways
and compares the journal calls and what the store holds.

A job goes the usual way when any of this does not hold (``lane_plan``, ``Worker``): the
worker made its own engine (no hooks, no journal of its own), the job is a first run or
starts from the beginning (no replay), and its inputs are one item for the routine's
one slot.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..errors import JobFinishedError, Retry, WeirflowError
from ..runtime.context import Context
from ..runtime.dead_letters import DeadLetterLog
from ..runtime.journal import INPUT, Step
from ..runtime.results import (
    InputStats,
    JobResult,
    JobStats,
    JobStatus,
    QueueStats,
    RoutineStats,
    format_traceback,
    made_from,
)
from .steps import StepRefused

if TYPE_CHECKING:
    from ..flow.graph import Flow
    from ..flow.policy import ErrorPolicy
    from ..flow.routine import Event
    from ..runtime.engine import Engine
    from ..runtime.hooks import HookSet
    from ..runtime.job import Job
    from ..runtime.journal import Journal
    from ..runtime.plan import FlowPlan


class LanePlan:
    """What the lane needs of a flow (made once per flow plan)."""

    __slots__ = (
        "_slot_stats",
        "capacity",
        "entry_slots",
        "events",
        "fn",
        "name",
        "outputs",
        "overflow",
        "path",
        "plan",
        "policy",
        "slot",
        "wants_ctx",
    )

    def __init__(self, flow: Flow, plan: FlowPlan) -> None:
        rp = plan.routines[0]
        act = rp.routine.activations[0]
        self.plan = plan
        self.name = rp.name
        self.slot = act.slots[0]
        self.path = f"{rp.name}.{self.slot}"
        spec = next(s for sl, _, s in rp.slots if sl == self.slot)
        self.capacity = spec.capacity
        self.overflow = spec.overflow.value
        self.fn = getattr(rp.routine, act.method)
        self.wants_ctx = act.wants_ctx
        self.policy: ErrorPolicy = rp.routine.on_error
        #: by event name: the flow output it feeds (``routine.event``), or ``None``
        self.events: dict[str, str | None] = {ev: output for ev, output, _ in rp.routes}
        self.outputs = tuple(flow.outputs)
        self.entry_slots = (self.path,)
        #: the slot's statistics at a job's end, by (processed, dead-lettered): its one item
        #: went one way or the other (frozen: shared by the results)
        self._slot_stats: dict[tuple[int, int], QueueStats] = {}

    def slot_stats(self, processed: int, dead_lettered: int) -> QueueStats:
        """The slot's ``QueueStats`` once a job ended: its item entered, and was processed or
        dead-lettered (``Job.queues()`` of the runtime's ``Job`` then)."""
        key = (processed, dead_lettered)
        stats = self._slot_stats.get(key)
        if stats is None:
            stats = self._slot_stats[key] = made_from(
                QueueStats,
                {
                    "slot": self.path,
                    "size": 0,
                    "capacity": self.capacity,
                    "usage": 0.0,
                    "high_water": 1,
                    "enqueued": 1,
                    "processed": processed,
                    "in_flight": 0,
                    "dead_lettered": dead_lettered,
                    "blocked_emitters": 0,
                    "blocked_s": 0.0,
                    "state": "ok",
                    "overflow": self.overflow,
                    "paused": False,
                },
            )
        return stats


def lane_plan(flow: Flow, plan: FlowPlan) -> LanePlan | None:
    """The lane's plan of ``flow``, or ``None`` when its jobs need a runtime ``Job``: more
    than one routine, connections, an ``on_end``, a handler that is not an async ``each``
    of one slot, or a routine run in child processes."""
    if len(plan.routines) != 1 or flow.connections:
        return None
    routine = plan.routines[0].routine
    if routine.has_on_end or routine.executor == "process" or len(routine.activations) != 1:
        return None
    act = routine.activations[0]
    if act.kind != "each" or not act.is_async or len(act.slots) != 1:
        return None
    lane = LanePlan(flow, plan)
    if lane.capacity < 1:
        return None
    return lane


class LaneRunner:
    """What a ``Context`` reads of its runner (``job``, ``name``, ``state``, ``progress``,
    ``emit``)."""

    __slots__ = ("job", "name", "progress", "state")

    def __init__(self, job: LaneJob, name: str) -> None:
        self.job = job
        self.name = name
        self.state: dict[str, Any] = {}
        self.progress: tuple[float, str] = (0.0, "")

    def emit(self, event: Event | str, item: Any, ctx: Context) -> Any:
        """``RoutineRunner.emit`` of a journaled routine with no connections: the item is
        checked by the journal, noted on the step and added to the flow's output."""
        name = event if type(event) is str else event.name  # type: ignore[union-attr]
        job = self.job
        events = job.lane.events
        if name not in events:
            if job.finished:
                job.refuse(f"emit on {self.name}.{name}")
            raise WeirflowError(
                f"routine {self.name!r} has no event {name!r} (events: {', '.join(events) or 'none'})"
            )
        if job.finished:
            job.refuse(f"emit on {self.name}.{name}")
        return self._emit(name, events[name], item, ctx)

    async def _emit(self, event: str, output: str | None, item: Any, ctx: Context) -> None:
        job = self.job
        job.journal.check(item)
        step = ctx.step
        if step is not None:
            step.emitted.append((event, item))
        if output is not None:
            job.outputs[output].append(item)


class LaneContext(Context):
    """``Context`` of a lane job: an emit from another thread than the loop's goes through
    the loop, as ``shared_queue.emit_from_thread`` sends a journaled route's emit there."""

    __slots__ = ("lane_runner", "loop_thread")

    def __init__(self, runner: LaneRunner) -> None:
        super().__init__(cast("Any", runner))
        # (its own references: Context's are the runtime's private parts)
        self.lane_runner = runner
        self.loop_thread = runner.job.loop_thread

    def emit(self, event: Event | str, item: Any) -> Any:
        runner = self.lane_runner
        if threading.get_ident() == self.loop_thread:
            return runner.emit(event, item, self)
        name = event if type(event) is str else event.name  # type: ignore[union-attr]
        job = runner.job
        events = job.lane.events
        if name not in events:
            if job.finished:
                raise JobFinishedError(f"job {job.id} is {job.status.value}; emit refused")
            raise WeirflowError(
                f"routine {runner.name!r} has no event {name!r} (events: {', '.join(events) or 'none'})"
            )
        if job.finished:
            raise JobFinishedError(f"job {job.id} is {job.status.value}; emit refused")

        async def on_loop() -> None:  # (the job may end before this runs: emit checks there)
            await runner.emit(event, item, self)

        asyncio.run_coroutine_threadsafe(on_loop(), job.loop).result()
        return None


class LaneJob:
    """One durable job run by the lane: what the journals, the ``Context`` and the worker
    read of a runtime ``Job`` (``id``, ``loop``, ``journal``, ``letters``, ``hook_set``,
    ``finished``, ``status``, ``fail``, ``cancel``, ``wait``), and its one call."""

    def __init__(self, engine: Engine, lane: LanePlan, job_id: str, item: Any) -> None:
        self.engine = engine
        self.lane = lane
        self.id = job_id
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.journal: Journal = cast("Journal", engine.journal)
        self.hook_set: HookSet = engine.hook_set()
        self.status = JobStatus.PENDING
        self.error: str | None = None
        self.error_traceback: str | None = None
        self.end_reason: str | None = None
        self.finished = False
        self.result: JobResult | None = None
        self.outputs: dict[str, list[Any]] = {path: [] for path in lane.outputs}
        self._started = time.monotonic()
        self.letters = DeadLetterLog(cast("Job", self), engine.max_dead_letters)
        self.runner = LaneRunner(self, lane.name)
        self.item = item
        self.queued = False  # the item waits in the slot (fed, not taken)
        self.taken = False  # a call holds it
        self.processed = 0
        self.calls = 0
        self.failures = 0
        self.retries = 0
        self.busy_s = 0.0
        self._calling: asyncio.Task[Any] | None = None  # the task in the call, while it runs
        self._cancel_sent = False
        self._done: asyncio.Future[JobResult] = self.loop.create_future()

    # -- what the journals and the context call -------------------------------------------

    def refuse(self, what: str) -> Any:
        raise JobFinishedError(f"job {self.id} is {self.status.value}; {what} refused")

    def step_progress(self, step: Step) -> None:
        if not self.finished:
            self.journal.step_progress(self._as_job, step)

    def hook_failed(self, hook: Any, point: str, error: Exception) -> None:  # (no hooks: never)
        raise error

    def fail(self, error: str, traceback: str | None = None) -> None:
        """``Job.fail``: end the job as failed (a journal that cannot record an item)."""
        if not self.finished:
            self.error_traceback = traceback
            self._finish(JobStatus.FAILED, error, "job_failed")

    def park(self, n: int) -> None:  # (a lane job is never paused)
        """``Job.park``: nothing to count, nobody pauses a lane job."""

    @property
    def _as_job(self) -> Job:
        return cast("Job", self)

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, timeout_s: float | None, started: Callable[[LaneJob], bool]) -> JobResult:
        """``Engine.start``, then the call, then the close-out; the result. ``started`` is
        called once the job runs (where ``Engine.start`` returns); ``True`` from it cancels
        the job before its call (it was cancelled in the store meanwhile). ``cancel`` may
        come at any await of the call; after ``timeout_s`` the job is cancelled
        (``timed_out``), as ``Job.wait(timeout_s)`` and ``Job.cancel`` in a worker do."""
        job = self._as_job
        journal = self.journal
        await journal.job_started(job)
        self.status = JobStatus.RUNNING
        self.queued = True
        journal.enqueued(job, self.lane.path, self.item, INPUT)
        if started(self) and not self.finished:
            self._end(JobStatus.CANCELLED, None, "job_cancelled")
        timer = None
        if timeout_s is not None:
            timer = self.loop.call_later(timeout_s, self._timed_out, timeout_s)
        try:
            if not self.finished:
                await self._call()
        finally:
            if timer is not None:
                timer.cancel()
        if not self.finished:  # the routine went idle: the tracker completes the job
            self._finish(JobStatus.COMPLETED, None, None)
        if self.result is None:
            self._close()
        assert self.result is not None
        return self.result

    timed_out = False

    def _timed_out(self, timeout_s: float) -> None:
        if not self.finished:
            self.timed_out = True
            self._end(JobStatus.CANCELLED, f"timed out after {timeout_s:g}s", "job_timeout")

    async def cancel(self, *, reason: str = "job_cancelled", error: str | None = None) -> JobResult:
        """``Job.cancel``: record the end, cancel the call (its item is dead-lettered)."""
        if not self.finished:
            self._end(JobStatus.CANCELLED, error, reason)
        return await asyncio.shield(self._done)

    async def wait(self, timeout_s: float | None = None) -> JobResult:
        return await asyncio.shield(self._done)

    def _end(self, status: JobStatus, error: str | None, reason: str) -> None:
        """End from outside the call: the end is recorded first, then a call running is
        cancelled (it settles its item), or, with none, the job closes now."""
        self._finish(status, error, reason)
        calling = self._calling
        if calling is not None and calling is not asyncio.current_task():
            if not self._cancel_sent:
                self._cancel_sent = True
                calling.cancel()
        elif calling is None and self.result is None:
            self._close()

    def _finish(
        self, status: JobStatus, error: str | None, reason: str | None, *, told: bool = False
    ) -> None:
        self.finished = True
        self.end_reason = reason
        self.error = error
        self.status = status
        if not told:  # (``told``: by ``step_completed_ending``)
            self.journal.job_ending(self._as_job, status, error)

    async def _call(self) -> None:
        """``RoutineRunner.run`` for the one item: wait for the journal, then ``_call_fast``
        with ``_call``'s retries and error policy."""
        journal = self.journal
        job = self._as_job
        lane = self.lane
        runner = self.runner
        self._calling = asyncio.current_task()
        try:
            while True:
                lag = journal.lagging()
                if lag is None:
                    break
                await lag
                if self.finished:
                    return
            item = self.item
            self.queued = False
            self.taken = True
            ctx = LaneContext(runner)
            attempt = 1
            while True:
                ctx.attempt = attempt
                ctx.step = step = Step(lane.name, 1, attempt, [(lane.slot, item)])
                try:
                    journal.step_started(job, step)
                except StepRefused:  # the job is not this worker's any more: it ends here
                    if not self.finished:
                        self._finish(JobStatus.CANCELLED, None, "job_cancelled")
                    self._settle_cancelled()
                    return
                t0 = time.perf_counter()
                try:
                    if lane.wants_ctx:
                        await lane.fn(item, ctx)
                    else:
                        await lane.fn(item)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - the error policy decides
                    error: Exception | None = e
                else:
                    error = None
                self.busy_s += time.perf_counter() - t0
                self.calls += 1
                if error is None:
                    self.taken = False
                    self.processed += 1
                    if self.finished:
                        self._step_done(step, ctx, None, final=True)
                    else:  # the job completes with it, in this frame (``run``): both told at once
                        self._step_done(step, ctx, None, final=True, ending=True)
                        if not self.finished:  # (a record the journal could not make fails it)
                            self._finish(JobStatus.COMPLETED, None, None, told=True)
                    return
                self.failures += 1
                delay = _retry_delay(lane.policy, error, attempt)
                text = f"{type(error).__name__}: {error}"
                if delay is None and isinstance(error, Retry):
                    text = f"Retry: retries exhausted after {attempt} attempt(s) ({error})"
                fails_job = delay is None and lane.policy.then == "fail_job"
                trace = format_traceback(error)
                error = None  # (its traceback holds this frame)
                if fails_job:
                    self.fail(f"routine {lane.name!r} failed: {text}", trace)
                step.traceback = trace
                self._step_done(step, ctx, text, final=delay is None)
                if delay is None:
                    self.taken = False
                    self.letters.add(lane.path, item, "handler_failed", text)
                    return
                self.retries += 1
                attempt += 1
                await asyncio.sleep(delay)  # retry backoff
        except asyncio.CancelledError:
            self._settle_cancelled()
            task = self._calling
            if not self._cancel_sent or task is None or task.uncancel() > 0:
                raise  # (not only the lane's own cancel: the task itself is being cancelled)
        finally:
            self._calling = None

    def _settle_cancelled(self) -> None:
        if self.taken:
            self.taken = False
            self.letters.add(self.lane.path, self.item, self.end_reason or "job_cancelled", None)

    def _step_done(
        self, step: Step, ctx: Context, error: str | None, final: bool, ending: bool = False
    ) -> None:
        """The step's end to the journals; ``ending``: with the job's end (completed), which
        the caller makes next, in this frame (``Journal.step_completed_ending``)."""
        step.status = "failed" if error else "completed"
        step.error = error
        step.final = final
        state = self.runner.state
        step.state = dict(state) if state else {}
        step.completed_at = time.time()
        ctx.step = None
        if ending:
            self.journal.step_completed_ending(self._as_job, step, JobStatus.COMPLETED)
        else:
            self.journal.step_completed(self._as_job, step)

    def _close(self) -> None:
        """``Job._close_now`` / ``_close_out``: dead-letter the item if it still waits in its
        slot, make the result, tell the journals, hand the result to the waiters."""
        reason, error = self.end_reason or "job_cancelled", self.error
        try:
            if self.queued:
                self.queued = False
                self.letters.add(self.lane.path, self.item, reason, error, from_queue=True)
        finally:
            result = self._make_result()
            self.result = result
            try:
                self.journal.job_finished_now(self._as_job, result)
            finally:
                self._done.set_result(result)

    def _make_result(self) -> JobResult:
        lane = self.lane
        letters = self.letters
        dead = letters.by_reason
        queue = lane.slot_stats(self.processed, letters.count)
        routine = made_from(
            RoutineStats,
            {
                "routine": lane.name,
                "calls": self.calls,
                "failures": self.failures,
                "retries": self.retries,
                "busy_s": self.busy_s,
                "active": 0,
            },
        )
        stats = made_from(
            JobStats,
            {
                "slots": {lane.path: queue},
                "routines": {lane.name: routine},
                "duration_s": time.monotonic() - self._started,
                "inputs": _ONE_INPUT,
                "entry_slots": lane.entry_slots,
            },
        )
        return made_from(
            JobResult,
            {
                "job_id": self.id,
                "status": self.status,
                "outputs": {k: list(v) for k, v in self.outputs.items()},
                "error": self.error,
                "dead_letters": list(letters.kept),
                "stats": stats,
                "dead_letter_count": letters.count,
                "dead_letter_reasons": dict(dead),
                "traceback": self.error_traceback,
            },
        )


_ONE_INPUT = made_from(InputStats, {"accepted": 1, "entered": 1, "waiting": 0, "dead_lettered": 0})


def _retry_delay(policy: ErrorPolicy, error: Exception, attempt: int) -> float | None:
    """``RoutineRunner._retry_delay``."""
    if attempt > policy.retries:
        return None
    if isinstance(error, Retry):
        return error.delay_s if error.delay_s is not None else policy.backoff.delay_s(attempt)
    if policy.gives_up_on(error):
        return None
    return policy.backoff.delay_s(attempt)
