"""Plain ``def`` routines on threads of their own.

A routine whose handlers are all plain ``def`` (one item per call or a join) runs,
in a job without a journal, on up to ``concurrency`` worker threads of its own.
A worker takes items straight from the routine's (shared) slot queues and keeps
going while any are queued, so one hand-off between threads carries a run of
items, not one; its emits append to the target slots under their locks and return
at once while there is room (``SharedSlotQueue.put_from_thread``). The event loop
hears from a worker only when something changes for it: the routine goes idle
(completion), a call fails for good (the error policy's end), a hook must see the
call start (or each call's end: ``Hooks.ends_now``), a pause waits for the call to reach
a safe point.

Counting for ``pause``: ``busy`` (calls running on workers) and ``parked`` (of
those, waiting at a safe point) are kept under the routine's lock, and the job
adds ``busy - parked`` of every thread runner to its own running calls
(``Job._quiet``). A worker checks under that lock, before every item, whether it
may take one, so a pause that has been requested sees every call that started.

When the job ends, the loop settles every call still running on a worker as a
dead letter (threads cannot be cancelled); the worker drops its result when the
call returns, and its emits are refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Coroutine
from typing import TYPE_CHECKING, Any

from .activation import BoundActivation, Taken
from .context import Context, ThreadContext
from .crew import ThreadCrew as ThreadCrew  # (engine.py imports it from here)
from .delivery import hold
from .hooks import HookPoint
from .runner import RoutineRunner
from .shared_queue import Waiters

if TYPE_CHECKING:
    from ..flow.graph import Flow
    from ..flow.routine import Routine
    from .job import Job

#: how long a worker with nothing to do keeps its thread before giving it back
LINGER_S = 0.5
#: handler-end notifications a worker collects before handing them to the loop
END_BATCH = 256

#: per call that ended on a worker thread: its item, its error, its duration
Ends = list[tuple[Any, BaseException | None, float]]


class _Call:
    """A handler call running on a worker."""

    __slots__ = ("done", "settled", "taken")

    def __init__(self, taken: Taken) -> None:
        self.taken = taken
        self.settled = False  # its items are accounted for (by the call, or the job's end)
        self.done: threading.Event | None = None  # set when the loop has done what was asked


def thread_routine(routine: Routine) -> bool:
    """Whether ``routine`` runs on worker threads (when the job has no journal)."""
    acts = routine.activations
    return bool(acts) and all(not a.is_async and a.kind in ("each", "join") for a in acts)


class ThreadRunner(RoutineRunner):
    """A ``RoutineRunner`` whose calls run on worker threads (see the module)."""

    def __init__(self, job: Job, name: str, routine: Routine, flow: Flow, shared: Collection[str]) -> None:
        super().__init__(job, name, routine, flow, shared)
        self.cond = Waiters(self.lock)  # workers waiting for items (or for a resume)
        self.workers = 0  # worker threads for this routine (working or waiting)
        self.sleeping = 0  # of which: waiting on ``cond``
        self.busy = 0  # calls running on workers
        self.parked = 0  # of which: waiting at a safe point
        self.lingering = 0  # of the busy ones, those the job was told still run after its end
        self.live: set[_Call] = set()
        self.stopping = False
        self.idle_posted = False
        self.idle_told = False  # the loop was told this routine went idle; no call since
        self.crew = job.engine.crew

    # -- what the loop sees ---------------------------------------------------------------

    threaded = True

    def idle(self) -> bool:
        with self.lock:
            return self.active == 0 and self.busy == 0 and not self.has_work()

    def idle_locked(self) -> bool:
        return self.active == 0 and self.busy == 0 and not self.has_work()

    def running_calls(self) -> int:
        return self.active + self.busy

    def makes_room(self) -> bool:
        """``RoutineRunner.makes_room``, safe on a worker thread: while a call that waited for
        room in one of its slots has not gone on (it may have been given room already)."""
        return any(q.calls_may_wait() for q in self.queues.values())

    def unparked_calls(self) -> int:
        with self.lock:
            return self.busy - self.parked

    def wake(self) -> None:
        super().wake()
        with self.lock:
            self.cond.notify_all()
            self._kick_locked()

    def on_item(self) -> None:  # lock held
        if self.cond.threads:
            self.cond.notify()
        elif self.sleeping == 0 and self.workers < self.concurrency:
            self._kick_locked()

    def park_from_thread(self, n: int) -> None:
        with self.lock:
            self.parked += n
            if n > 0:
                self._quiet_changed_locked()

    # -- the coordinator on the loop ----------------------------------------------------

    async def run(self) -> None:
        job = self.job
        try:
            while not job.finished:
                if self.idle():
                    job.tracker.idle(self)
                self.waiter = job.loop.create_future()
                with self.lock:
                    self._kick_locked()
                await self.waiter
        finally:
            self._stop()

    def _stop(self) -> None:
        """The job ended: settle what workers still run (as the job's end), wake them all."""
        job = self.job
        reason = job.end_reason or "job_cancelled"
        dead: list[tuple[str, Any]] = []
        with self.lock:
            self.stopping = True
            for call in self.live:
                if call.settled:
                    continue
                call.settled = True
                for q, item in call.taken:
                    q.settle_locked(1, True)  # type: ignore[attr-defined]
                    dead.append((q.path, item))
                if call.done is not None:
                    call.done.set()
            self.live.clear()
            self.cond.notify_all()
            if self.busy > self.lingering:  # they run on after the job's end (``lingering``)
                job.call_lingers(self.busy - self.lingering)
                self.lingering = self.busy
        for path, item in dead:
            job.letters.add(path, item, reason, None)

    # -- workers ----------------------------------------------------------------------------

    def _held_locked(self) -> bool:
        """The job or this routine is paused (and not stepping through this routine)."""
        job = self.job
        return self.paused or (job.paused and not job.may_run(self))

    def _may_take_locked(self) -> bool:
        job = self.job
        return not (
            job.finished
            or self.stopping
            or self.paused
            or self.active  # on_end runs (on the loop)
            or (job.paused and not job.may_run(self))
        )

    def _ready_locked(self) -> BoundActivation | None:
        acts = self.acts
        n = len(acts)
        for i in range(n):
            a = acts[(self._rr + i) % n]
            if a.has_work():
                self._rr = (self._rr + i + 1) % n
                return a
        return None

    def _kick_locked(self) -> None:
        """Start a worker if items wait, none is free to take them, and concurrency allows."""
        if (
            self.sleeping == 0
            and self.workers < self.concurrency
            and self.workers <= self.busy
            and self._may_take_locked()
            and self.has_work()
        ):
            self.workers += 1
            try:
                self.crew.start(self._work)
            except RuntimeError:  # the engine is closing
                self.workers -= 1

    def _quiet_changed_locked(self) -> None:
        """A call stopped or reached a safe point: a waiting ``pause`` may return now."""
        job = self.job
        if job.paused or job.quiet_wanted():
            job.loop.call_soon_threadsafe(job.wake_quiet)
        if self.lingering > self.busy:  # calls that outlived the job's end returned
            job.post_lingering_ended(self.lingering - self.busy)
            self.lingering = self.busy

    def _idle_matters_locked(self) -> bool:
        """Whether the loop must hear now that this routine went idle: its component may
        end (nothing upstream or at the inputs can still feed it) or is ending (``on_end``
        waits for it to go quiet). Else the moment that makes the end possible (an upstream
        component ending, the inputs settling, a resume) checks the component itself, and
        that check takes this lock, so it sees this routine idle: a post per run of items
        (a wake-up of the loop each) would only make the loop look for nothing."""
        job = self.job
        if job.finished:
            return False
        comp = self.component
        if comp is None or comp.ending:
            return True
        if job.paused or job.inputs_open():
            return False
        return all(up.ended for up in comp.upstream)

    def _post_idle_locked(self) -> None:
        """Tell the loop this routine went idle, once per idle spell: the loop's answer
        (``wake``) wakes the workers, and one that finds nothing to do does not tell it
        again until a call has run (it did: the two threads traded wake-ups at full speed
        until the job's end, with the routine's component ended and a later one working)."""
        if not self.idle_posted and not self.idle_told and self._idle_matters_locked():
            self.idle_posted = True
            self.idle_told = True
            self.job.loop.call_soon_threadsafe(self._idle_on_loop)

    def _idle_on_loop(self) -> None:
        with self.lock:
            self.idle_posted = False
        self.wake()

    def _work(self) -> None:
        """A worker: take items while there are any (and the job lets it), call the handler.

        The lock is taken once per item: the previous call is settled and the next item
        taken in one go."""
        lock = self.lock
        ctx = ThreadContext(self)
        ends: Ends = []
        lock.acquire()
        try:
            while True:
                act = self._ready_locked() if self._may_take_locked() else None
                if act is None:
                    if self.stopping or self.job.finished:
                        break
                    for q in self.queues.values():
                        if q.putters or q.waiting:  # type: ignore[attr-defined]
                            q.consumer_stopped_locked()  # type: ignore[attr-defined]
                    if ends:
                        self._post_ends(ends)
                        ends = []
                    if self.busy == 0 and self.active == 0:
                        self._post_idle_locked()
                    self.sleeping += 1
                    try:
                        notified = self.cond.wait(LINGER_S)
                    finally:
                        self.sleeping -= 1
                    if not notified and not (self._may_take_locked() and self.has_work()):
                        break
                    continue
                if self.runs_in_a_row and act.kind == "each" and self._in_a_row_ok():
                    self._run_in_a_row_locked(act, ctx, ends)
                    continue
                if self.runs_waves and self._run_wave_locked(act, ctx):
                    continue
                calls = self._take_calls_locked(act)
                self.live.update(calls)
                self.busy += 1
                self.idle_told = False
                if self.sleeping == 0 and self.workers < self.concurrency:
                    self._kick_locked()  # more items than workers: bring in another
                lock.release()
                times: list[float] = []
                try:
                    times = self._run_calls(act, calls, ctx, ends)
                    if ends and self.job.hook_set.ends_now:  # (supfix) see _post_ends_now
                        self._post_ends_now(ends)
                        ends = []
                finally:
                    lock.acquire()
                    for call, dt in zip(calls, times, strict=False):
                        if dt >= 0 and not call.settled:  # it succeeded: settle it here, locked
                            call.settled = True
                            for q, _ in call.taken:
                                q.settle_locked(1, False)  # type: ignore[attr-defined]
                            self.calls += 1
                            self.busy_s += dt
                    for call in calls:
                        if call.settled:  # else the job's end settles it (_stop)
                            self.live.discard(call)
                    self.busy -= 1
                    self._quiet_changed_locked()
                if len(ends) >= END_BATCH:
                    self._post_ends(ends)
                    ends = []
        finally:
            self.workers -= 1
            if ends:
                self._post_ends(ends)
            if self.busy == 0 and self.active == 0 and not self.stopping:
                self._post_idle_locked()
            lock.release()

    #: whether a worker may make calls in a row (``_run_in_a_row_locked``); a process
    #: runner sends batches instead
    runs_in_a_row = True
    #: whether a worker may run its routine's process chain as a wave
    #: (``process_wave``; ``ProcessRunner._run_wave_locked``)
    runs_waves = False

    def _run_wave_locked(self, act: BoundActivation, ctx: Context) -> bool:
        """Run a wave of requests if this routine's chain may (lock held on entry and on
        return); whether it did."""
        return False

    def _in_a_row_ok(self) -> bool:
        """One ``each`` activation and nothing that watches a call's start or end."""
        return len(self.acts) == 1 and not self.watch_start and not self.job.hook_set.handler_end

    def _run_in_a_row_locked(self, act: BoundActivation, ctx: Context, ends: Ends) -> None:
        """Calls of an ``each`` handler in a row while items are queued (the lock held on
        entry and on return; let go during each call).

        The general turn of ``_work`` costs a ``_Call``, a list of them, the readiness and
        pause checks as method calls and the settlement loop per item: about four times
        the handler call and its emit on the 5-routine forwarding chain. Here one lock
        acquisition settles the call that ended and takes the next item, and the checks
        are attribute reads. The counts are those of the general turn at every moment
        the lock is let go: the item taken is in flight (one per running call) until its
        call settles it. It stops (back to the general turn, which checks everything)
        when the slot is empty, the job or the routine pauses or ends, ``on_end`` runs,
        or hooks change; a failed call goes through ``_call_on_thread`` (retries, the
        error policy) and the run goes on after it."""
        job = self.job
        lock = self.lock
        q: Any = act.queues[0]  # a SharedSlotQueue: its ``_locked`` methods
        items = q.items
        fn = act.fn
        wants_ctx = act.wants_ctx
        hooks = job.hook_set
        perf_counter = time.perf_counter
        call = _Call([])
        self.live.add(call)
        self.busy += 1
        self.idle_told = False
        if self.sleeping == 0 and self.workers < self.concurrency:
            self._kick_locked()  # more items than workers: bring in another
        ctx.attempt = 1
        locked = True
        try:
            while True:
                item = q.take_locked()
                call.taken = [(q, item)]
                call.settled = False
                locked = False
                lock.release()
                t0 = perf_counter()
                try:
                    if wants_ctx:
                        fn(item, ctx)
                    else:
                        fn(item)
                    dt = perf_counter() - t0
                except Exception as e:  # noqa: BLE001 - the error policy decides, in _call_on_thread
                    dt = self._call_on_thread(act, call, ctx, ends, (e, perf_counter() - t0))
                    ctx.attempt = 1
                lock.acquire()
                locked = True
                if call.settled:  # the job's end settled it (``_stop``); or the policy did
                    if job.finished or self.stopping:
                        break
                else:
                    call.settled = True
                    q.settle_locked(1, False)
                    self.calls += 1
                    self.busy_s += dt
                if (
                    not items
                    or job.finished
                    or job.paused
                    or self.stopping
                    or self.paused
                    or self.active
                    or self.watch_start
                    or job.hook_set is not hooks
                ):
                    break
        finally:
            if not locked:
                lock.acquire()
            self.live.discard(call)
            self.busy -= 1
            self._quiet_changed_locked()

    def _post_ends(self, ends: Ends) -> None:
        hooks = self.job.hook_set.handler_end
        if hooks:
            self.job.loop.call_soon_threadsafe(self._ends_on_loop, hooks, ends)

    def _post_ends_now(self, ends: Ends) -> None:
        """Hand ``ends`` to the loop and wait until the hooks were called (a hook with
        ``ends_now``: a pipeline child writes its acknowledgements to the pipe there, so an
        item whose handler returned is acknowledged before this worker takes the next one,
        and a kill of the process cannot take it back). Called without the lock, right
        after the calls, before they are settled: one round trip to the loop per call, paid
        only while such a hook is attached (the batched ``_post_ends`` otherwise)."""
        hooks = self.job.hook_set.handler_end
        done = threading.Event()

        def run() -> None:
            try:
                self._ends_on_loop(hooks, ends)
            finally:
                done.set()

        try:
            self.job.loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            return
        done.wait()  # (as ``_on_loop``: a loop that runs runs ``run``)

    def _ends_on_loop(self, hooks: list[Any], ends: Ends) -> None:
        job = self.job
        for item, error, dt in ends:
            for hook in hooks:
                try:
                    hook(job, self.name, item, error, dt)
                except Exception as e:  # noqa: BLE001 - contained: see hooks.py
                    job.hook_failed(hook, "on_handler_end", e)

    def _on_loop(self, call: _Call, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the loop and wait for it (or for the job's end)."""
        done = call.done = threading.Event()

        async def run() -> None:
            try:
                await coro
            finally:
                done.set()

        def spawn() -> None:
            if call.settled or self.job.finished:
                coro.close()
                done.set()
            else:
                self.job.spawn(run())

        try:
            self.job.loop.call_soon_threadsafe(spawn)
        except RuntimeError:  # the loop is closed
            coro.close()
            return
        done.wait()
        call.done = None

    def _take_calls_locked(self, act: BoundActivation) -> list[_Call]:
        """What one turn of a worker takes: one call here (a batch for processes)."""
        return [_Call(act.take_locked())]

    def _run_calls(self, act: BoundActivation, calls: list[_Call], ctx: Context, ends: Ends) -> list[float]:
        """Run the calls taken; per call the duration of its success, or -1 (settled)."""
        return [self._call_on_thread(act, calls[0], ctx, ends)]

    def _call_on_thread(
        self,
        act: BoundActivation,
        call: _Call,
        ctx: Context,
        ends: Ends,
        first: tuple[Exception, float] | None = None,
    ) -> float:
        """One call with its retries, on this worker's thread. Returns the last attempt's
        duration if it succeeded (the caller settles the items), else -1 once the items
        are settled (or the job's end will settle them). ``first``: the first attempt
        already ran (``_run_in_a_row_locked``), raising this error after this long."""
        error: Exception | None = None
        try:
            job = self.job
            attempt = 1
            if self.watch_start and first is None:
                point = HookPoint(
                    "handler_start",
                    job,
                    self.name,
                    act.point_item(call.taken),
                    slot=call.taken[0][0].path,
                    attempt=attempt,
                    grouped=act.kind != "each",
                )
                self._on_loop(call, self._start_hooks(act, call, point))
                if call.settled or job.finished:
                    return -1.0
            track_ends = bool(job.hook_set.handler_end)
            fn = act.fn
            while True:
                taken = call.taken
                if act.kind == "each":
                    args: tuple[Any, ...] = (taken[0][1], ctx) if act.wants_ctx else (taken[0][1],)
                else:
                    args = (*act.args(taken), ctx) if act.wants_ctx else act.args(taken)
                ctx.attempt = attempt
                if first is not None:
                    error, dt = first
                    first = None
                else:
                    t0 = time.perf_counter()
                    try:
                        fn(*args)
                    except Exception as e:  # noqa: BLE001 - the error policy decides
                        error = e
                    else:
                        error = None
                    dt = time.perf_counter() - t0
                if track_ends:
                    ends.append((act.point_item(taken), error, dt))
                if error is None:
                    return dt
                with self.lock:
                    self.busy_s += dt
                    self.calls += 1
                    self.failures += 1
                if call.settled:
                    return -1.0
                delay = self._retry_delay(error, attempt)
                if delay is None:
                    self._on_loop(call, self._give_up(call, error, attempt))
                    return -1.0
                with self.lock:
                    self.retries += 1
                attempt += 1
                self.park_from_thread(1)
                try:
                    with self.lock:  # the retry backoff; ends early when the job ends
                        deadline = time.monotonic() + delay
                        while not self.stopping and (left := deadline - time.monotonic()) > 0:
                            self.cond.wait(left)
                        while not self.stopping and self._held_locked():
                            self.cond.wait()
                finally:
                    self.park_from_thread(-1)
                if call.settled:
                    return -1.0
        finally:  # the error's traceback holds this frame: leave no cycle behind
            error = None
            first = None

    async def _start_hooks(self, act: BoundActivation, call: _Call, point: HookPoint) -> None:
        await hold(self.job, self.job.hook_set.handler_start, point, parks=True)
        if call.settled:
            return
        if point.drop_reason is not None:
            self._settle_call(call, (point.drop_reason, None))
            return
        call.taken = act.replace(call.taken, point.item)

    async def _give_up(self, call: _Call, error: Exception, attempt: int) -> None:
        from ..errors import Retry

        text = f"{type(error).__name__}: {error}"
        if isinstance(error, Retry):
            text = f"Retry: retries exhausted after {attempt} attempt(s) ({error})"
        if call.settled:
            return
        if self.policy.then == "fail_job":
            self.job.fail(f"routine {self.name!r} failed: {text}")
        self._settle_call(call, ("handler_failed", text))

    def _settle_call(self, call: _Call, dead: tuple[str, str | None]) -> None:
        """On the loop: dead-letter the items of ``call`` (unless the job's end did)."""
        with self.lock:
            if call.settled:
                return
            call.settled = True
            for q, _ in call.taken:
                q.settle_locked(1, True)  # type: ignore[attr-defined]
        for q, item in call.taken:
            self.job.letters.add(q.path, item, dead[0], dead[1])
