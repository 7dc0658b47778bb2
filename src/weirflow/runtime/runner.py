"""``RoutineRunner``: one routine in one job — its queues, activation, calls and errors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Collection, Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import Retry, WeirflowError
from .activation import BoundActivation, Taken
from .context import Context
from .delivery import hold
from .gil import let_threads_in
from .hooks import HookPoint
from .journal import Step
from .journal_run import JournaledCalls
from .lanes import FAIR_SHARE_CALLS, Lanes
from .lingering import call_in_pool
from .replay import rerun_ended
from .results import format_traceback
from .shared_queue import SharedSlotQueue
from .slot_queue import SlotQueue

if TYPE_CHECKING:
    from ..flow.graph import Flow
    from ..flow.routine import Event, Routine
    from .completion import Component
    from .delivery import Route
    from .job import Job
    from .replay import Rerun


class RoutineRunner(Lanes, JournaledCalls):
    """Runs one routine of one job: waits for ready activations and calls handlers."""

    #: whether its calls run on worker threads, which change its counts (``ThreadRunner``)
    threaded = False

    def __init__(
        self, job: Job, name: str, routine: Routine, flow: Flow, shared: Collection[str] = ()
    ) -> None:
        """``shared``: the paths of this routine's slots that threads use too."""
        self.job = job
        self.name = name
        self.routine = routine
        self.state: dict[str, Any] = {}
        self.lock = threading.Lock()  # guards this routine's shared slot queues
        self._wake_posted = False  # a wake-up from a thread is on its way to the loop
        self.queues: dict[str, SlotQueue] = {}
        for sl, path, spec in job.plan.by_name[name].slots:
            if path in shared:
                self.queues[sl] = SharedSlotQueue(job, self, sl, spec, self.lock)
            else:
                self.queues[sl] = SlotQueue(job, self, sl, spec)
        #: the slots threads put into: told when this runner stops taking (``consumer_stopped``)
        self.shared_queues: list[SharedSlotQueue] = [
            q for q in self.queues.values() if isinstance(q, SharedSlotQueue)
        ]
        self.acts = [BoundActivation(self, a) for a in routine.activations]
        self.end_act = BoundActivation(self, None) if routine.has_on_end else None
        self.routes: dict[str, Route] = {}  # by event name (delivery.build_routes)
        #: by event name, the routes whose slots are all shared, and those slots: where a
        #: worker thread's emit goes straight in (``shared_queue.emit_from_thread``)
        self.thread_routes: dict[str, tuple[Route, tuple[SharedSlotQueue, ...]]] = {}
        self.watch_start = False  # a hook watches this routine's handler starts (delivery.wire)
        self.concurrency = routine.concurrency
        self.policy = routine.on_error
        self.active = 0
        self.waiter: asyncio.Future[None] | None = None
        #: at its idle point in ``run`` (no call, nothing taken): the job may close out in
        #: this task's frame (``Job._quiet``)
        self.resting = False
        self.init_lanes()
        self.paused = False
        # awaited only while the routine is paused (``pause_routine`` makes a new one);
        # until then the job's "not paused" future, which is done
        self.resumed: asyncio.Future[None] = job.done_future
        self.calls = 0
        self.failures = 0
        self.retries = 0
        self.busy_s = 0.0
        self.seq = 0
        self.progress: tuple[float, str] = (0.0, "")
        self.ctx = Context(self)
        self.component: Component | None = None
        self.on_end_done = False
        self.end_rerun: Rerun | None = None  # on_end, when a crash interrupted it (replay)
        self._rr = 0

    def release(self) -> None:
        """Drop this runner's links to its queues, activations, routes and context (the job
        was released: ``Job.release``), so that nothing of it is cyclic garbage."""
        for route in self.routes.values():
            route.release()
        self.routes = {}
        self.thread_routes = {}
        self.queues = {}
        self.shared_queues = []
        self.acts = []
        self.end_act = None
        self.component = None
        del self.ctx

    # -- waking and readiness ---------------------------------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self.lane_waiters:
            self.wake_lane()

    def on_item(self) -> None:
        """An item was queued in one of this routine's shared slots (lock held)."""
        if threading.get_ident() == self.job.loop_thread:
            self.wake()
        elif not self._wake_posted:
            self._wake_posted = True
            self.job.loop.call_soon_threadsafe(self._posted_wake)

    def _posted_wake(self) -> None:
        with self.lock:
            self._wake_posted = False
        self.wake()

    def park_from_thread(self, n: int) -> None:
        """A call of this routine running in a thread waits at a safe point (``n`` = 1) or
        goes on (-1)."""
        self.job.loop.call_soon_threadsafe(self.job.park, n)

    def running_calls(self) -> int:
        return self.active

    def has_work(self) -> bool:
        acts = self.acts
        if len(acts) == 1:  # (most routines: no generator to make, asked a few times per job)
            return acts[0].has_work()
        return any(a.has_work() for a in acts)

    def makes_room(self) -> bool:
        """Whether a handler call waits for room in one of this routine's slots."""
        return any(q.calls_waiting() for q in self.queues.values())

    def idle(self) -> bool:
        return self.active == 0 and not self.has_work()

    def idle_locked(self) -> bool:
        """``idle``, with this runner's lock held by the caller (``Component.quiescent``)."""
        return self.active == 0 and not self.has_work()

    def _next(self) -> BoundActivation | None:
        acts = self.acts
        n = len(acts)
        if n == 1:
            a = acts[0]
            if a.kind == "each":
                return a if a.queues[0].items else None
            return a if a.ready() else None
        for i in range(n):
            a = acts[(self._rr + i) % n]
            if a.ready():
                self._rr = (self._rr + i + 1) % n
                return a
        return None

    async def run(self) -> None:
        """The runner's task: until the job finishes, start calls as activations get ready."""
        job = self.job
        loop = job.loop
        journal = job.journal
        tasks: set[asyncio.Task[None]] = set()
        streak = 0  # calls since this task last let others run
        try:
            while not job.finished:
                if not job.may_run(self):
                    await job.wait_resumed(self, parked=False)
                    continue
                act = self._next() if self.active < self.concurrency else None
                if act is None:
                    if self.active == 0:
                        self.resting = True  # holding nothing: the job may close out now
                        try:
                            job.tracker.idle(self)
                        finally:
                            self.resting = False
                    for q in self.shared_queues:
                        q.consumer_stopped()
                    if job.finished:  # (its going idle ended the job): nothing to wait for
                        break
                    self.waiter = loop.create_future()
                    await self.waiter
                    streak = 0
                    continue
                if journal is not None:
                    lag = journal.lagging()
                    if lag is not None:  # a job must not outrun its journal by much (Journal.lagging)
                        await lag
                        continue
                streak += 1
                if streak >= FAIR_SHARE_CALLS:
                    # a long backlog must not starve other tasks of the loop (heartbeats,
                    # store I/O, the HTTP API): let them run, then carry on
                    streak = 0
                    let_threads_in()
                    await asyncio.sleep(0)
                    continue
                if self.concurrency > 1 and self._lanes_fit(act):
                    # up to ``concurrency`` lanes take the items themselves; this task
                    # starts them as items wait, and sees the routine go idle
                    want = min(self.concurrency, len(act.queues[0].items))
                    while self.lanes < want:
                        self.lanes += 1
                        task = loop.create_task(self._lane(act))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    self.waiter = loop.create_future()
                    await self.waiter
                    streak = 0
                elif self.concurrency > 1:
                    # counted now, not when the task starts: the routine is busy from here
                    self.active += 1
                    job.call_started()
                    taken = act.take_resumed() if job.journal is not None else act.take()
                    task = loop.create_task(
                        self._call(act, taken, counted=True, attempt=act.first_attempt, rerun=act.rerun)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif act.kind == "each" and act.is_async and not self.watch_start:
                    if len(self.acts) > 1 or job.hook_set.handler_end:
                        await self._call_fast(act)
                    elif journal is None:
                        streak += await self._run_plain(act, FAIR_SHARE_CALLS - streak) - 1
                    else:
                        streak += await self._run_journaled(act, FAIR_SHARE_CALLS - streak) - 1
                elif job.journal is not None:
                    taken = act.take_resumed()
                    await self._call(act, taken, attempt=act.first_attempt, rerun=act.rerun)
                else:
                    await self._call(act, act.take())
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_plain(self, act: BoundActivation, budget: int) -> int:
        """Calls in a row, in one frame, while items wait: one slot, an async handler,
        nothing watching (no journal, no hook on handler starts or ends). Stops when the
        slot is empty, the job or the routine pauses or finishes, a call fails (handed to
        ``_call`` for the error policy), hooks are attached or removed (the next call
        honours them), or after ``budget`` calls; returns how many it made.

        The routine counts as busy (``active``) from the first call to the last: no other
        task runs between two calls, so nobody can see the difference. Busy time is
        measured over the whole run of calls."""
        job = self.job
        q = act.queues[0]
        if q.rerun_attempts:  # restored items carry their attempts: one call at a time
            await self._call_fast(act)
            return 1
        items = q.items
        fn = act.fn
        ctx = self.ctx
        ctx.attempt = 1
        wants_ctx = act.wants_ctx
        failed: tuple[Any, Exception] | None = None
        n = 0
        hooks = job.hook_set
        self.active = 1
        job.call_started()
        t0 = time.perf_counter()
        try:
            while True:
                item = q.take()
                n += 1
                try:
                    if wants_ctx:
                        await fn(item, ctx)
                    else:
                        await fn(item)
                except asyncio.CancelledError:
                    self._cancelled(q, item)
                    raise
                except Exception as e:  # noqa: BLE001 - the error policy decides, in _call
                    failed = (item, e)
                    break
                q.settle(1, False)
                self.calls += 1
                if not items or n >= budget or job.finished or job.paused or self.paused:
                    break
                if job.hook_set is not hooks:  # (an item sent now must meet them)
                    break
        finally:
            self.active = 0
            job.call_ended()
            self.busy_s += time.perf_counter() - t0
        if failed is not None:
            self.calls += 1
            try:
                await self._call(act, [(q, failed[0])], first_error=failed[1])
            finally:  # the error's traceback holds this frame: leave no cycle behind
                failed = None
        return n

    async def _call_fast(self, act: BoundActivation) -> None:
        """The common case in one frame: one item, an async handler, no hook watching its
        start (with a journal, the call's step records too). A failure is handed to
        ``_call`` for the error policy."""
        job = self.job
        journal = job.journal
        q = act.queues[0]
        rerun = q.rerun_attempts.popleft() if q.rerun_attempts else None
        attempt = 1 if rerun is None else rerun.attempt
        item = q.take()
        self.active = 1
        job.call_started()
        ctx = self.ctx
        ctx.attempt = attempt
        step: Step | None = None
        t0 = time.perf_counter()
        try:
            # (in the ``try``: a journal that refuses the start raises a ``CancelledError``,
            # and the item settles as a cancelled call's does)
            if journal is not None:  # _step_begin, inlined
                if rerun is None:
                    self.seq += 1
                    ctx.step = step = Step(self.name, self.seq, attempt, [(q.name, item)])
                else:  # a crash interrupted this call: the same step again
                    ctx.step = step = Step(self.name, rerun.seq, attempt, [(q.name, item)])
                    step.delivered = rerun.delivered
                journal.step_started(job, step)
            if act.wants_ctx:
                await act.fn(item, ctx)
            else:
                await act.fn(item)
        except asyncio.CancelledError:
            self._cancelled(q, item)
            raise
        except Exception as e:  # noqa: BLE001 - the error policy decides, in _call
            error: Exception | None = e
        else:
            error = None
        finally:
            self.active = 0
            job.call_ended()
        dt = time.perf_counter() - t0
        self.busy_s += dt
        self.calls += 1
        for end_hook in job.hook_set.handler_end:
            try:
                end_hook(job, self.name, item, error, dt)
            except Exception as e:  # noqa: BLE001 - contained: the call settles as if it returned
                job.hook_failed(end_hook, "on_handler_end", e)
        if error is None:
            q.settle(1, False)
            if step is not None:
                self._step_done(step, ctx, None, final=True)
        else:
            try:
                await self._call(act, [(q, item)], first_error=error, attempt=attempt, first_step=step)
            finally:  # the error's traceback holds this frame: leave no cycle behind
                error = None

    # -- emitting -----------------------------------------------------------------

    def emit(self, event: Event | str, item: Any, ctx: Context) -> Coroutine[Any, Any, None]:
        """Deliver ``item`` on ``event`` (what ``ctx.emit`` awaits): the route's function,
        chosen by ``delivery.wire``."""
        name = event if type(event) is str else event.name  # type: ignore[union-attr]
        route = self.routes.get(name)
        if route is None:
            if self.job.finished:  # (a released job's runners have no routes left)
                self.job.refuse(f"emit on {self.name}.{name}")
            raise WeirflowError(
                f"routine {self.name!r} has no event {name!r} (events: {', '.join(self.routes) or 'none'})"
            )
        if self.job.finished:
            self.job.refuse(f"emit on {self.name}.{name}")
        return route.emit(item, ctx)

    # -- calling ------------------------------------------------------------------

    def _retry_delay(self, error: Exception, attempt: int) -> float | None:
        policy = self.policy
        if attempt > policy.retries:
            return None
        if isinstance(error, Retry):
            return error.delay_s if error.delay_s is not None else policy.backoff.delay_s(attempt)
        if policy.gives_up_on(error):
            return None
        return policy.backoff.delay_s(attempt)

    def _settle(self, taken: Taken, dead: tuple[str, str | None] | None) -> None:
        if dead is None:
            for q, _ in taken:
                q.settle(1, False)
            return
        reason, error = dead
        for q, item in taken:
            q.settle_dead(item, reason, error)

    async def _call(
        self,
        act: BoundActivation,
        taken: Taken,
        first_error: Exception | None = None,
        counted: bool = False,
        attempt: int = 1,
        first_step: Step | None = None,
        rerun: Rerun | None = None,
    ) -> None:
        """One handler call, with its retries; settles every taken item exactly once.

        ``first_error``: the first attempt already ran (in ``_call_fast``) and raised it.
        ``counted``: the caller already counted this call as active. ``attempt``: the
        first attempt's number (> 1 when a crash interrupted this call before);
        ``first_step``: the journal's step of the first attempt, when it already ran;
        ``rerun``: the call a crash interrupted, which this one runs again (its ``seq``).
        """
        job = self.job
        hooks = job.hook_set
        if not counted:
            self.active += 1
            job.call_started()
        settled = False
        journal = job.journal
        step: Step | None = first_step  # the first attempt's, when it already ran
        seq = step.seq if step is not None else rerun.seq if rerun is not None else 0
        try:
            while True:
                ctx = self.ctx if self.concurrency == 1 else Context(self)
                if first_error is not None:
                    error: Exception | None = first_error
                    first_error = None
                else:
                    if self.watch_start and act.kind != "end":
                        point = HookPoint(
                            "handler_start",
                            job,
                            self.name,
                            act.point_item(taken),
                            slot=taken[0][0].path if taken else None,
                            attempt=attempt,
                            grouped=act.kind != "each",
                        )
                        await hold(job, hooks.handler_start, point, parks=True)
                        if point.drop_reason is not None:
                            self._settle(taken, (point.drop_reason, None))
                            settled = True
                            return
                        taken = act.replace(taken, point.item)
                    args = act.args(taken)
                    ctx.attempt = attempt
                    if journal is not None:
                        step = self._step_begin(ctx, seq, attempt, taken, on_end=act.kind == "end")
                        seq = step.seq
                        if rerun is not None:  # its first attempt here: not again what went
                            step.delivered = rerun.delivered
                            rerun = None
                    if act.wants_ctx:
                        args = (*args, ctx)
                    t0 = time.perf_counter()
                    error = None
                    try:
                        if act.is_async:
                            await act.fn(*args)
                        else:
                            await self._invoke_sync(act, args, ctx)
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:  # noqa: BLE001 - the error policy decides
                        error = e
                    dt = time.perf_counter() - t0
                    self.busy_s += dt
                    if taken:  # on_end is not a handler call
                        self.calls += 1
                    for end_hook in hooks.handler_end:
                        try:
                            end_hook(job, self.name, act.point_item(taken) if taken else None, error, dt)
                        except Exception as e:  # noqa: BLE001 - contained: settled as if it returned
                            job.hook_failed(end_hook, "on_handler_end", e)
                if error is None:
                    self._settle(taken, None)
                    settled = True
                    if step is not None:
                        self._step_done(step, ctx, None, final=True)
                    return
                if taken:
                    self.failures += 1
                delay = self._retry_delay(error, attempt)
                text = f"{type(error).__name__}: {error}"
                if delay is None and isinstance(error, Retry):
                    text = f"Retry: retries exhausted after {attempt} attempt(s) ({error})"
                fails_job = delay is None and self.policy.then == "fail_job"
                trace = format_traceback(error) if step is not None or fails_job else None
                if fails_job:
                    # first, so that a journal records the job's end before this step's:
                    # resuming the job later runs this call again
                    job.fail(f"routine {self.name!r} failed: {text}", trace)
                if step is not None:
                    step.traceback = trace
                    self._step_done(step, ctx, text, final=delay is None)
                if delay is not None:
                    self.retries += 1
                    attempt += 1
                    job.park(1)
                    try:
                        await asyncio.sleep(delay)  # retry backoff
                    finally:
                        job.park(-1)
                    if not job.may_run(self):
                        await job.wait_resumed(self, parked=True)
                    continue
                if taken:
                    self._settle(taken, ("handler_failed", text))
                else:
                    job.letters.add(f"{self.name}.on_end", None, "on_end_failed", text)
                settled = True
                return
        except asyncio.CancelledError:
            if not settled:
                self._settle(taken, (job.end_reason or "job_cancelled", None))
            raise
        finally:
            error = first_error = None  # its traceback holds this frame: leave no cycle behind
            self.active -= 1
            job.call_ended()
            if self.concurrency > 1:
                self.wake()

    async def _invoke_sync(self, act: BoundActivation, args: tuple[Any, ...], ctx: Context) -> None:
        """Call a plain ``def`` handler (or ``on_end``) in the engine's thread pool (cancelled
        as the job ends, a call that runs lingers until it returns: ``lingering``)."""
        await call_in_pool(self.job, act.fn, *args)

    def _step_begin(self, ctx: Context, seq: int, attempt: int, taken: Taken, on_end: bool = False) -> Step:
        """Record that an attempt starts: a new call gets the next ``seq``; a retry (``seq``
        given) keeps its call's."""
        if not seq:
            self.seq += 1
            seq = self.seq
        step = Step(self.name, seq, attempt, [(q.name, item) for q, item in taken], on_end=on_end)
        ctx.step = step
        journal = self.job.journal
        assert journal is not None
        journal.step_started(self.job, step)
        return step

    def _step_done(self, step: Step, ctx: Context, error: str | None, final: bool) -> None:
        journal = self.job.journal
        assert journal is not None
        step.status = "failed" if error else "completed"
        step.error = error
        step.final = final
        state = self.state
        step.state = dict(state) if state else {}
        step.completed_at = time.time()
        ctx.step = None
        if step.delivered:
            rerun_ended(step)
        journal.step_completed(self.job, step)

    async def run_on_end(self) -> None:
        """Call ``on_end`` once (with the routine's error policy)."""
        if self.end_act is None or self.on_end_done:
            return
        self.on_end_done = True
        rerun = self.end_rerun
        await self._call(self.end_act, [], attempt=1 if rerun is None else rerun.attempt, rerun=rerun)
