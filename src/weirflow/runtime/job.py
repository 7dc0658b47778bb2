"""``Job``: one run of a flow — its queues, runners, pause state, dead letters and result."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import (
    InputClosedError,
    JobFinishedError,
    JobTimeoutError,
    UnknownSlotError,
)
from .completion import Tracker
from .dead_letters import DeadLetterLog
from .delivery import build_routes, wire
from .hooks import Hooks, HookSet, hook_failure
from .inputs import Inputs
from .journal import Step
from .lingering import Lingering
from .observing import Observing
from .pausing import Pausing
from .plan import FlowPlan, plan_of
from .process_call import ProcessCallRunner
from .process_runner import ProcessRunner
from .replay import apply_restore
from .results import (
    DeadLetter,
    JobResult,
    JobStatus,
    format_traceback,
    made_from,
)
from .runner import RoutineRunner
from .slot_queue import SlotQueue
from .threads import ThreadRunner, thread_routine

if TYPE_CHECKING:
    from ..flow.graph import Flow
    from ..flow.routine import Routine
    from .engine import Engine
    from .replay import Restore


def new_job_id() -> str:
    """A random id in ``uuid.uuid4().hex``'s form (32 hex digits, version 4, RFC 4122
    variant), made from the random bits directly: ``uuid4`` builds a ``UUID`` object
    and checks it, twice the cost, once per job."""
    n = int.from_bytes(os.urandom(16))
    return "%032x" % ((n & _ID_CLEAR) | _ID_SET)


_ID_CLEAR = ~(0xF000 << 64) & ~(0xC000 << 48)  # the version and variant bits
_ID_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, variant 10


def runner_class(routine: Routine, threads: bool) -> type[RoutineRunner]:
    """How a routine runs: on worker threads (``threads``: the job has no journal),
    in child processes, or on the loop's usual call path."""
    if routine.executor == "process":
        return ProcessRunner if threads and thread_routine(routine) else ProcessCallRunner
    return ThreadRunner if threads and thread_routine(routine) else RoutineRunner


def shared_slots(flow: Flow) -> set[str]:
    """Slots that threads use: those of routines on worker threads, and those fed by a
    routine with plain ``def`` code (its emits come from threads)."""
    shared = {f"{n}.{s}" for n, r in flow.routines.items() if thread_routine(r) for s in r.slots}
    sync = {
        n
        for n, r in flow.routines.items()
        if any(not a.is_async for a in r.activations) or (r.has_on_end and not r.on_end_is_async)
    }
    shared.update(c.to_path for c in flow.connections if c.source in sync)
    return shared


class Job(Observing, Pausing, Lingering):
    """A running flow. Create with ``await engine.start(flow, inputs)``.

    Slot queues, routine state and statistics belong to the job: two jobs of
    one flow never see each other's items.
    """

    def __init__(
        self,
        engine: Engine,
        flow: Flow,
        *,
        keep_open: bool = False,
        job_id: str | None = None,
        hooks: Iterable[Hooks] = (),
        plan: FlowPlan | None = None,
    ) -> None:
        """``plan``: the flow's ``plan_of(flow)``, when the caller has it already."""
        self.engine = engine
        self.flow = flow
        self.id = job_id or new_job_id()
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.status = JobStatus.PENDING
        self.error: str | None = None
        self.error_traceback: str | None = None
        self.created_at = time.time()
        self._started = time.monotonic()
        self._ended: float | None = None
        self.hook_set = engine.hook_set(hooks)
        self.journal = engine.journal
        self.letters = DeadLetterLog(self, engine.max_dead_letters)
        self.inputs = Inputs(self, keep_open=keep_open)
        self.outputs: dict[str, list[Any]] = {path: [] for path in flow.outputs}
        self.plan = plan = plan or plan_of(flow)
        self.finished = False  # read-only for other modules, as every public attribute here
        self.init_pausing()  # (before the runners: they share its "not paused" future)
        self.init_lingering()
        self.runners: dict[str, RoutineRunner] = {}
        threads = self.journal is None
        for rp in plan.routines:
            if threads:
                self.runners[rp.name] = rp.threaded_class(self, rp.name, rp.routine, flow, rp.shared)
            else:
                self.runners[rp.name] = runner_class(rp.routine, False)(self, rp.name, rp.routine, flow)
        self._thread_runners = [r for r in self.runners.values() if isinstance(r, ThreadRunner)]
        build_routes(self)
        self._queues: dict[str, SlotQueue] = {
            q.path: q for r in self.runners.values() for q in r.queues.values()
        }
        self.refresh_hooks()
        self.tracker = Tracker(self, self.runners, plan.components)
        self.end_reason: str | None = None  # the dead letters' reason once the job ended
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner_tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self._done: asyncio.Future[JobResult] = self.loop.create_future()
        self.result: JobResult | None = None
        self.released = False  # ``release()`` let go of the parts it ran with

    def __repr__(self) -> str:
        return f"<Job {self.id} flow={self.flow.name!r} status={self.status.value}>"

    # -- lifecycle ----------------------------------------------------------------

    async def begin(self, inputs: dict[str, Any], restore: Restore | None = None) -> None:
        feeds: list[tuple[SlotQueue, list[Any]]] = []
        for path, items in inputs.items():
            q = self.queue(path)
            feeds.append((q, list(items) if isinstance(items, list | tuple) else [items]))
        if restore is not None:
            apply_restore(self, restore)
            if self.journal is not None:
                self.journal.job_restored(self)
            feeds = [(q, items[restore.fed.get(q.path, 0) :]) for q, items in feeds]
        if self.journal is not None:
            await self.journal.job_started(self)
        # accepted from here on: whatever ends the job, each is fed or dead-lettered
        started = [self.inputs.add_feed(q, items) for q, items in feeds]
        self._set_status(JobStatus.RUNNING, None)
        for runner in self.runners.values():
            task = self.loop.create_task(runner.run(), name=f"weirflow:{self.id}:{runner.name}")
            task.add_done_callback(self._task_done)
            self._runner_tasks.append(task)
        for feed in started:
            if not self.inputs.feed_now(feed):
                self.spawn(self.inputs.feed(feed))
        self.tracker.check_all()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task of this job (cancelled when it ends; failing fails it)."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self.finished:
            exc = task.exception()
            assert exc is not None
            self.fail(f"internal error: {type(exc).__name__}: {exc}", format_traceback(exc))

    def _set_status(self, status: JobStatus, reason: str | None) -> str | None:
        """Move to ``status`` and tell the hooks; the error text of a ``fatal`` hook that
        raised (a failing hook is reported; the status stands either way)."""
        self.status = status
        fatal: str | None = None
        for hook in self.hook_set.job_status:
            try:
                hook(self, status, reason)
            except Exception as e:  # noqa: BLE001 - contained: see hooks.py
                fatal = self._hook_error(hook, "on_job_status", e) or fatal
        if fatal is not None and not self.finished:
            self.fail(fatal)
        return fatal

    def _hook_error(self, hook: Any, point: str, error: Exception) -> str | None:
        return hook_failure(self.engine.hook_errors, self.id, hook, point, error)

    def hook_failed(self, hook: Any, point: str, error: Exception) -> None:
        """A hook raised at ``point``: log and count it; fail the job if the hook is ``fatal``.
        The caller goes on as if the hook had returned."""
        fatal = self._hook_error(hook, point, error)
        if fatal is not None and not self.finished:
            self.fail(fatal)

    def complete(self) -> None:
        """End the job as completed (the tracker calls this once everything has ended)."""
        if not self.finished:
            self._finish(JobStatus.COMPLETED, None, None)

    def fail(self, error: str, traceback: str | None = None) -> None:
        """End the job as failed with ``error`` (and the failure's ``traceback`` text), as a
        ``fail_job`` error policy does (also for an extension that cannot go on, e.g. a
        journal); nothing once it has finished."""
        if not self.finished:
            self.error_traceback = traceback
            self._finish(JobStatus.FAILED, error, "job_failed")

    def _finish(self, status: JobStatus, error: str | None, reason: str | None) -> None:
        self.finished = True
        self.end_reason = reason
        self.error = error
        fatal = self._set_status(status, error)
        if fatal is not None and status is JobStatus.COMPLETED:  # a fatal hook refused the end
            self.end_reason, self.error, status = "job_failed", fatal, JobStatus.FAILED
            self._set_status(status, fatal)
        if self.journal is not None:
            self.journal.job_ending(self, status, self.error)
        if self._quiet():
            self._close_now()
        else:
            self._closing = self.loop.create_task(self._close_out())

    def _quiet(self) -> bool:
        """Whether nothing of the job runs or holds an item now, so that it can be closed
        out at once, in the caller's frame: no journal, or one whose ``job_finished`` needs
        no await (``Journal.finish_awaits``; it hears ``job_finished_now``), no task of the
        job's own still running, and every runner task done, or a plain ``RoutineRunner``
        with no call and no lane running and not paused (``pause_routine``: its task waits
        for the resume, which the close-out cancels) — parked (or woken and about to see
        the end: it holds nothing) or, for the task ending the job, at its idle point
        (``RoutineRunner.resting``). The common end of a job, whose last runner went idle."""
        if len(self._runner_tasks) != len(self.runners):
            return False  # it has not started its runners yet
        journal = self.journal
        if journal is not None and journal.finish_awaits():
            return False
        for t in self._tasks:
            if not t.done():
                return False
        me = asyncio.current_task()
        for runner, t in zip(self.runners.values(), self._runner_tasks, strict=True):
            if t.done():
                continue
            if type(runner) is not RoutineRunner or runner.active or runner.lanes or runner.paused:
                return False  # (a paused routine's task waits for its resume: cancelled)
            if t is me and not runner.resting:
                return False
        return True

    def _close_now(self) -> None:
        """``_close_out`` for a quiet job (``_quiet``): the same steps, with nothing to await
        (a journal hears ``job_finished_now``, last, as it would ``job_finished``). The
        runner tasks still parked are woken and leave their loop on their own."""
        reason, error = self.end_reason or "job_cancelled", self.error
        try:
            for runner in self.runners.values():
                runner.wake()
            self._stop_inputs()
            self._drain(reason, error)
        finally:
            result = self._make_final_result()
            try:
                if self.journal is not None:
                    self.journal.job_finished_now(self, result)
            finally:  # a failing journal must not leave the job's waiters hanging
                self._publish(result, now=False)

    async def _close_out(self) -> None:
        """Stop everything, then dead-letter every item the job accepted and did not
        process: starting inputs not fed, sends waiting, queued items (calls in flight
        dead-letter their own items as they are cancelled). Always sets the result."""
        reason, error = self.end_reason or "job_cancelled", self.error
        result: JobResult | None = None
        try:
            me = asyncio.current_task()
            tasks = [t for t in (*self._runner_tasks, *self._tasks) if t is not me and not t.done()]
            for runner, t in zip(self.runners.values(), self._runner_tasks, strict=True):
                if not t.done() and type(runner) is RoutineRunner and runner.waiter is not None:
                    # parked on its waiter with nothing running: woken, it sees the end and
                    # returns (cheaper than a CancelledError through its frames)
                    runner.wake()
                elif t is not me:
                    t.cancel()
            for t in self._tasks:
                if t is not me:
                    t.cancel()
            self._stop_inputs()
            if tasks:  # (a cancelled call dead-letters the items it holds)
                await asyncio.gather(*tasks, return_exceptions=True)
            self._drain(reason, error)
        finally:  # whatever failed above, the job's waiters get a result
            result = self._make_final_result()
            try:
                if self.journal is not None:
                    await self.journal.job_finished(self, result)
            finally:  # a failing journal must not leave the job's waiters hanging
                self._publish(result)

    def _stop_inputs(self) -> None:
        refused: JobFinishedError | None = None  # (made only when there is someone to tell)
        for q in self._queues.values():
            if q.putters or type(q) is not SlotQueue:  # (a shared queue wakes its threads too)
                if refused is None:
                    refused = JobFinishedError(f"job {self.id} is {self.status.value}; item not accepted")
                q.fail_putters(refused)
        if not self._resumed.done():
            self._resumed.set_result(None)
        self.wake_quiet()
        self.inputs.stop()

    def _drain(self, reason: str, error: str | None) -> None:
        for q in self._queues.values():
            if q.items:
                q.drain(reason, error)
        self.inputs.abandon(reason, error)

    def _make_final_result(self) -> JobResult:
        """The result, once the job's parts stopped; the ``on_job_result`` hooks have seen it
        (a ``fatal`` one that raised fails a completed job, and the result says so)."""
        self._ended = time.monotonic()
        # the runner tasks are done (or cancelled): a finished job kept for reading
        # need not keep them, their coroutines and contexts alive for the GC to scan
        self._runner_tasks = []
        result = self._make_result()
        fatal: str | None = None
        for hook in self.hook_set.job_result:
            try:
                hook(self, result)
            except Exception as e:  # noqa: BLE001 - contained: see hooks.py
                fatal = self._hook_error(hook, "on_job_result", e) or fatal
        if fatal is not None and result.status is JobStatus.COMPLETED:
            self.end_reason, self.error = "job_failed", fatal
            self._set_status(JobStatus.FAILED, fatal)
            result = self._make_result()
        self.result = result
        return result

    def _publish(self, result: JobResult, *, now: bool = True) -> None:
        """Hand the result to the job's waiters; a job forgotten before its result is
        released (``now``, or soon: not in the frames of the parts that ended it)."""
        self._done.set_result(result)
        if self.engine.jobs.get(self.id) is not self:
            if now:
                self.release()
            else:
                self.loop.call_soon(self.release)

    def _make_result(self) -> JobResult:
        letters = self.letters
        return made_from(
            JobResult,
            {
                "job_id": self.id,
                "status": self.status,
                "outputs": {k: list(v) for k, v in self.outputs.items()},
                "error": self.error,
                "dead_letters": list(letters.kept),
                "stats": self.stats,
                "dead_letter_count": letters.count,
                "dead_letter_reasons": dict(letters.by_reason),
                "traceback": self.error_traceback,
            },
        )

    async def wait(self, timeout_s: float | None = None) -> JobResult:
        """Wait for the job to finish; ``JobTimeoutError`` if it does not within ``timeout_s``."""
        done = self._done
        if done.done():
            return done.result()
        if timeout_s is None:
            return await asyncio.shield(done)
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(done)
        except TimeoutError:
            raise JobTimeoutError(f"job {self.id} did not finish within {timeout_s}s") from None

    async def cancel(self, *, reason: str = "job_cancelled", error: str | None = None) -> JobResult:
        """Stop the job: running calls are cancelled, and every item it accepted and did
        not process (starting inputs not fed yet, sends waiting, queued and in-flight
        items) is dead-lettered with ``reason`` (``job_timeout`` when a time limit ended
        it) and ``error``. Returns the result."""
        if not self.finished:
            self._finish(JobStatus.CANCELLED, error, reason)
        return await asyncio.shield(self._done)

    def release(self) -> None:
        """Let go of the parts a finished job ran with (``Engine.forget`` calls this once its
        result is set). What stays: ``result``, ``status``, ``error``, the dead letters,
        ``input_closed``, and the final ``stats`` and ``queues()`` (from the result); the
        slots, routines and their state are gone.

        A job's parts refer to each other (job, runners, slot queues, routes, contexts,
        tasks), so a forgotten job used to be cyclic garbage, old by then, that only a
        full collection of the cyclic GC frees: in a server keeping 1,000 finished jobs,
        a pause of up to 0.3 s every few thousand jobs. Released, it is freed as its last
        reference goes."""
        if self.result is None or self.released:
            return
        self.released = True
        for runner in self.runners.values():
            runner.release()
        self.runners = {}
        self._queues = {}
        self._thread_runners = []
        self._runner_tasks = []
        self._tasks = set()
        self._closing = None
        self.inputs.release()
        self.letters.release()
        self.tracker.release()

    def add_done_callback(self, fn: Callable[[Job], None]) -> None:
        """Call ``fn(job)`` on the job's loop once its result is ready (``wait()`` has it;
        soon after this call if it already has). Cheaper than a task awaiting ``wait()``."""
        self._done.add_done_callback(lambda _: fn(self))

    async def wait_closed(self) -> None:
        """Wait until the job's clean-up after its end is done (``wait()`` has its result)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """The dead letters so far (the first ``Engine(max_dead_letters=...)`` of them)."""
        return self.letters.kept

    @property
    def dead_letter_count(self) -> int:
        """Every dead letter so far, kept or not."""
        return self.letters.count

    # -- input ----------------------------------------------------------------------

    def queue(self, path: str) -> SlotQueue:
        try:
            return self._queues[path]
        except KeyError:
            raise UnknownSlotError(
                f"flow {self.flow.name!r} has no slot {path!r} (slots: {', '.join(self._queues)})"
            ) from None

    def inputs_open(self) -> bool:
        return self.inputs.is_open()

    def inputs_settled(self) -> None:
        """Input is closed and no feed or send is under way: components may end now."""
        self.tracker.check_all()

    async def send(self, slot: str, item: Any, *, timeout_s: float | None = None) -> None:
        """Put ``item`` into ``slot`` (``"routine.slot"``), waiting while it is full.

        Waits up to ``timeout_s`` (default: the slot's ``block_timeout_s``) and then
        raises ``SlotFullError``; ``fail`` and drop slots behave as for emits.
        """
        if self.finished:  # first: a released job has no slots left to look ``slot`` up in
            self.refuse(f"send to {slot}")
        q = self.queue(slot)
        if self.inputs.closed:
            raise InputClosedError(f"job {self.id}: input is closed; send to {slot} refused")
        if self.journal is not None:
            self.journal.check(item)
        await self.inputs.send(q, item, q.block_timeout_s if timeout_s is None else timeout_s)

    async def close_input(self) -> None:
        """No more sends; the job completes once everything queued has been processed."""
        self.inputs.close()

    @property
    def input_closed(self) -> bool:
        return self.inputs.closed

    # -- the data path (see delivery.py) ------------------------------------------------

    def refuse(self, what: str) -> NoReturn:
        """Raise ``JobFinishedError``: ``what`` comes after the job finished."""
        raise JobFinishedError(f"job {self.id} is {self.status.value}; {what} refused")

    def step_progress(self, step: Step) -> None:
        if self.journal is not None and not self.finished:
            self.journal.step_progress(self, step)

    def queue_state_changed(self, slot: str, state: str) -> None:
        for hook in self.hook_set.queue_state:
            try:
                hook(self, slot, state)
            except Exception as e:  # noqa: BLE001 - contained: see hooks.py
                self.hook_failed(hook, "on_queue_state", e)

    # -- hooks ---------------------------------------------------------------------------

    def add_hooks(self, *hooks: Hooks) -> None:
        """Attach hooks to this job only (on the event loop)."""
        for h in hooks:
            if not isinstance(h, Hooks):
                raise TypeError(f"hooks must be wf.Hooks instances, not {type(h).__name__}")
        self.hook_set = HookSet([*self.hook_set.hooks, *hooks])
        self.refresh_hooks()

    def remove_hooks(self, *hooks: Hooks) -> None:
        self.hook_set = HookSet([h for h in self.hook_set.hooks if all(h is not x for x in hooks)])
        self.refresh_hooks()

    def refresh_hooks(self) -> None:
        """Ask every hook again what it watches (``Hooks.watches``) and choose every
        connection's delivery accordingly (``delivery.wire``); call after a hook changes
        its interests."""
        wire(self)

    def queue_list(self) -> list[SlotQueue]:
        """Every slot queue of the job."""
        return list(self._queues.values())

    def runner(self, routine: str) -> RoutineRunner:
        try:
            return self.runners[routine]
        except KeyError:
            raise UnknownSlotError(f"flow {self.flow.name!r} has no routine {routine!r}") from None
