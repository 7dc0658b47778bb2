"""``Job``: one run of a flow — its queues, runners, pause state, dead letters and result."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import (
    InputClosedError,
    JobFinishedError,
    JobTimeoutError,
    NotPausedError,
    SlotFullError,
    UnknownSlotError,
)
from .completion import Tracker
from .hooks import HookPoint, Hooks, HookSet
from .journal import INPUT, Step
from .replay import apply_restore, undelivered
from .results import (
    DeadLetter,
    JobResult,
    JobStats,
    JobStatus,
    PausePoint,
    QueueStats,
    ResumeReport,
    RoutineStats,
    fill_warnings,
)
from .runner import RoutineRunner
from .slot_queue import SlotQueue

if TYPE_CHECKING:
    from ..flow.graph import Flow
    from .context import Context
    from .engine import Engine
    from .replay import Restore


LANE_FAST, LANE_JOURNAL, LANE_HOOKS = 0, 1, 2  # how an event's items are delivered


class Job:
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
    ) -> None:
        self.engine = engine
        self.flow = flow
        self.id = job_id or uuid.uuid4().hex
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.status = JobStatus.PENDING
        self.error: str | None = None
        self.created_at = time.time()
        self._started = time.monotonic()
        self._ended: float | None = None
        self._hooks = HookSet([*engine.hooks, *hooks])
        self._journal = engine.journal
        self.dead_letters: list[DeadLetter] = []
        self.outputs: dict[str, list[Any]] = {path: [] for path in flow.outputs}
        self.runners: dict[str, RoutineRunner] = {
            name: RoutineRunner(self, name, routine, flow) for name, routine in flow.routines.items()
        }
        edges: set[tuple[str, str]] = set()
        for name, runner in self.runners.items():
            for ev in runner.routine.events:
                targets = tuple(
                    self.runners[c.target].queues[c.slot]
                    for c in flow.connections
                    if c.source == name and c.event == ev
                )
                runner.routes[ev] = (targets, self.outputs.get(f"{name}.{ev}"), False)
                edges.update((name, q.runner.name) for q in targets)
        self._queues: dict[str, SlotQueue] = {
            q.path: q for r in self.runners.values() for q in r.queues.values()
        }
        self.refresh_hooks()
        self._tracker = Tracker(self, self.runners, edges)
        self._finished = False
        self._end_reason: str | None = None
        self._paused = False
        self._stepping: set[str] = set()  # routines allowed to run while the job is paused
        self.pause_reason: str | None = None
        self.paused_at: float | None = None
        self._resumed: asyncio.Future[None] = self.loop.create_future()
        self._resumed.set_result(None)
        self._running = 0
        self._parked = 0
        self._quiet_waiters: list[asyncio.Future[None]] = []
        self._input_closed = not keep_open
        self._pending_sends = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner_tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self._done: asyncio.Future[JobResult] = self.loop.create_future()
        self.result: JobResult | None = None

    def __repr__(self) -> str:
        return f"<Job {self.id} flow={self.flow.name!r} status={self.status.value}>"

    # -- lifecycle ----------------------------------------------------------------

    async def _start(self, inputs: dict[str, Any], restore: Restore | None = None) -> None:
        feeds: list[tuple[SlotQueue, list[Any]]] = []
        for path, items in inputs.items():
            q = self._queue(path)
            feeds.append((q, list(items) if isinstance(items, list | tuple) else [items]))
        if restore is not None:
            apply_restore(self, restore)
            if self._journal is not None:
                self._journal.job_restored(self)
            feeds = [(q, items[restore.fed.get(q.path, 0) :]) for q, items in feeds]
        if self._journal is not None:
            await self._journal.job_started(self)
        self._set_status(JobStatus.RUNNING, None)
        for runner in self.runners.values():
            task = self.loop.create_task(runner.run(), name=f"weirflow:{self.id}:{runner.name}")
            task.add_done_callback(self._task_done)
            self._runner_tasks.append(task)
        for q, items in feeds:
            self._pending_sends += 1
            self._spawn(self._feed(q, items))
        self._tracker.check_all()

    async def _feed(self, q: SlotQueue, items: list[Any]) -> None:
        """Feed initial inputs. No caller waits to see a rejection here, so an item a
        ``fail`` slot (or a block timeout) refuses is dead-lettered as ``input_rejected``."""
        try:
            for item in items:
                try:
                    await self._enqueue(q, item, q.block_timeout_s, parks=False, origin=INPUT)
                except SlotFullError as e:
                    q.enqueued += 1
                    q.dead_lettered += 1
                    self._dead_letter(q.path, item, "input_rejected", str(e))
        finally:
            self._sends_done()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self._finished:
            exc = task.exception()
            self._fail(f"internal error: {type(exc).__name__}: {exc}")

    def _set_status(self, status: JobStatus, reason: str | None) -> None:
        self.status = status
        for hook in self._hooks.job_status:
            hook(self, status, reason)

    @property
    def finished(self) -> bool:
        return self._finished

    def _complete(self) -> None:
        if not self._finished:
            self._finish(JobStatus.COMPLETED, None, None)

    def _fail(self, error: str) -> None:
        if not self._finished:
            self._finish(JobStatus.FAILED, error, "job_failed")

    def _finish(self, status: JobStatus, error: str | None, reason: str | None) -> None:
        if self._journal is not None:
            self._journal.job_ending(self, status, error)
        self._finished = True
        self._end_reason = reason
        self.error = error
        self._set_status(status, error)
        self._closing = self.loop.create_task(self._close_out(status))

    async def _close_out(self, status: JobStatus) -> None:
        me = asyncio.current_task()
        tasks = [t for t in (*self._runner_tasks, *self._tasks) if t is not me and not t.done()]
        for t in tasks:
            t.cancel()
        refused = JobFinishedError(f"job {self.id} is {status.value}; item not accepted")
        for q in self._queues.values():
            q.fail_putters(refused)
        if not self._resumed.done():
            self._resumed.set_result(None)
        self._wake_quiet()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for q in self._queues.values():
            if q.items:
                q.drain(self._end_reason or "job_cancelled", self.error)
        self._ended = time.monotonic()
        self.result = JobResult(
            job_id=self.id,
            status=status,
            outputs={k: list(v) for k, v in self.outputs.items()},
            error=self.error,
            dead_letters=list(self.dead_letters),
            stats=self.stats,
        )
        try:
            if self._journal is not None:
                await self._journal.job_finished(self, self.result)
        finally:  # a failing journal must not leave the job's waiters hanging
            self._done.set_result(self.result)
        for hook in self._hooks.job_result:
            hook(self, self.result)

    async def wait(self, timeout_s: float | None = None) -> JobResult:
        """Wait for the job to finish; ``JobTimeoutError`` if it does not within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(self._done)
        except TimeoutError:
            raise JobTimeoutError(f"job {self.id} did not finish within {timeout_s}s") from None

    async def cancel(self) -> JobResult:
        """Stop the job: running calls are cancelled, every queued or in-flight item is
        dead-lettered with reason ``job_cancelled``. Returns the result."""
        if not self._finished:
            self._finish(JobStatus.CANCELLED, None, "job_cancelled")
        return await asyncio.shield(self._done)

    # -- input ----------------------------------------------------------------------

    def _queue(self, path: str) -> SlotQueue:
        try:
            return self._queues[path]
        except KeyError:
            raise UnknownSlotError(
                f"flow {self.flow.name!r} has no slot {path!r} (slots: {', '.join(self._queues)})"
            ) from None

    def _inputs_open(self) -> bool:
        return not self._input_closed or self._pending_sends > 0

    def _sends_done(self) -> None:
        self._pending_sends -= 1
        if self._pending_sends == 0 and self._input_closed:
            self._tracker.check_all()

    async def send(self, slot: str, item: Any, *, timeout_s: float | None = None) -> None:
        """Put ``item`` into ``slot`` (``"routine.slot"``), waiting while it is full.

        Waits up to ``timeout_s`` (default: the slot's ``block_timeout_s``) and then
        raises ``SlotFullError``; ``fail`` and drop slots behave as for emits.
        """
        q = self._queue(slot)
        if self._finished:
            self._refuse(f"send to {slot}")
        if self._input_closed:
            raise InputClosedError(f"job {self.id}: input is closed; send to {slot} refused")
        if self._journal is not None:
            self._journal.check(item)
        self._pending_sends += 1
        try:
            await self._enqueue(q, item, q.block_timeout_s if timeout_s is None else timeout_s, parks=False)
        finally:
            self._sends_done()

    async def close_input(self) -> None:
        """No more sends; the job completes once everything queued has been processed."""
        if not self._input_closed:
            self._input_closed = True
            if self._pending_sends == 0:
                self._tracker.check_all()

    @property
    def input_closed(self) -> bool:
        return self._input_closed

    # -- the data path (slow lane: hooks or journal present) ---------------------------

    def _refuse(self, what: str) -> NoReturn:
        raise JobFinishedError(f"job {self.id} is {self.status.value}; {what} refused")

    async def _hold(self, hooks: list[Any], point: HookPoint, parks: bool) -> None:
        if parks:
            self._park(1)
        try:
            for hook in hooks:
                await hook(point)
                if point.drop_reason is not None:
                    return
        finally:
            if parks:
                self._park(-1)

    async def _enqueue(
        self,
        q: SlotQueue,
        item: Any,
        timeout_s: float | None,
        parks: bool,
        origin: Step | str | None = None,
    ) -> None:
        if q.watched:
            point = HookPoint("enqueue", self, q.runner.name, item, slot=q.path)
            await self._hold(self._hooks.enqueue, point, parks)
            if point.drop_reason is not None:
                q.enqueued += 1
                q.dead_lettered += 1
                self._dead_letter(q.path, point.item, point.drop_reason, None)
                return
            item = point.item
        if self._finished:
            self._refuse(f"item for {q.path}")
        queued = await q.put(item, timeout_s, parks)
        if queued and self._journal is not None:
            self._journal.enqueued(self, q.path, item, origin)

    async def _deliver(
        self, runner: RoutineRunner, event: str, targets: tuple[SlotQueue, ...], item: Any, ctx: Context
    ) -> None:
        hooks = self._hooks
        ev_path = f"{runner.name}.{event}"
        if self._journal is not None:
            self._journal.check(item)
        if event in runner.watch_emit:
            point = HookPoint("emit", self, runner.name, item, event=ev_path, attempt=ctx.attempt)
            await self._hold(hooks.emit, point, parks=True)
            if point.drop_reason is not None:
                self._dead_letter(ev_path, point.item, point.drop_reason, None)
                return
            item = point.item
        step = ctx._step
        if step is not None:
            step.emitted.append((event, item))
            if step.delivered is not None:  # a rerun: not again where it already went
                targets = undelivered(step, targets, item)
        for q in targets:
            value = item
            if (event, q.path) in runner.watch_route:
                point = HookPoint(
                    "route", self, runner.name, item, event=ev_path, slot=q.path, attempt=ctx.attempt
                )
                await self._hold(hooks.route, point, parks=True)
                if point.drop_reason is not None:
                    q.enqueued += 1
                    q.dead_lettered += 1
                    self._dead_letter(q.path, point.item, point.drop_reason, None)
                    continue
                value = point.item
            await self._enqueue(q, value, q.block_timeout_s, parks=True, origin=step)

    def _dead_letter(
        self, slot: str, item: Any, reason: str, error: str | None, from_queue: bool = False
    ) -> None:
        letter = DeadLetter(slot=slot, item=item, reason=reason, error=error, at=time.time())
        self.dead_letters.append(letter)
        for hook in self._hooks.dead_letter:
            hook(self, letter)
        if self._journal is not None:
            self._journal.dead_lettered(self, letter, from_queue=from_queue)

    def _step_progress(self, step: Step) -> None:
        if self._journal is not None and not self._finished:
            self._journal.step_progress(self, step)

    def _queue_state(self, slot: str, state: str) -> None:
        for hook in self._hooks.queue_state:
            hook(self, slot, state)

    # -- hooks ---------------------------------------------------------------------------

    def add_hooks(self, *hooks: Hooks) -> None:
        """Attach hooks to this job only (on the event loop)."""
        for h in hooks:
            if not isinstance(h, Hooks):
                raise TypeError(f"hooks must be wf.Hooks instances, not {type(h).__name__}")
        self._hooks = HookSet([*self._hooks.hooks, *hooks])
        self.refresh_hooks()

    def remove_hooks(self, *hooks: Hooks) -> None:
        self._hooks = HookSet([h for h in self._hooks.hooks if all(h is not x for x in hooks)])
        self.refresh_hooks()

    def refresh_hooks(self) -> None:
        """Ask every hook again what it watches (``Hooks.watches``) and set the fast
        and slow lanes accordingly; call after a hook changes its interests."""
        hs = self._hooks
        journal = self._journal is not None
        for q in self._queues.values():
            q.watched = hs.watching("on_enqueue", q.path)
        for name, runner in self.runners.items():
            runner.watch_start = hs.watching("on_handler_start", name)
            runner.watch_emit = {ev for ev in runner.routes if hs.watching("on_emit", f"{name}.{ev}")}
            runner.watch_route = {
                (ev, q.path)
                for ev, (targets, _, _) in runner.routes.items()
                for q in targets
                if hs.watching("on_route", f"{name}.{ev} -> {q.path}")
            }
            for ev, (targets, out, _) in list(runner.routes.items()):
                hooked = ev in runner.watch_emit or any(
                    (ev, q.path) in runner.watch_route or q.watched for q in targets
                )
                runner.routes[ev] = (
                    targets,
                    out,
                    LANE_HOOKS if hooked else LANE_JOURNAL if journal else LANE_FAST,
                )

    # -- pause and resume ---------------------------------------------------------------

    def _park(self, n: int) -> None:
        self._parked += n
        if n > 0:
            self._wake_quiet()

    def _call_done(self) -> None:
        self._wake_quiet()

    def _wake_quiet(self) -> None:
        if self._quiet_waiters and (self._running <= self._parked or self._finished):
            waiters, self._quiet_waiters = self._quiet_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _wait_resumed(self, runner: RoutineRunner | None, parked: bool) -> None:
        if parked:
            self._park(1)
        try:
            while not self._finished:
                if self._paused and (runner is None or runner.name not in self._stepping):
                    fut = self._resumed
                elif runner is not None and runner.paused:
                    fut = runner.resumed
                else:
                    return
                await asyncio.shield(fut)
        finally:
            if parked:
                self._park(-1)

    @property
    def paused(self) -> bool:
        return self._paused

    def request_pause(self, reason: str = "manual") -> None:
        """Stop starting handler calls (from a hook or a thread on the loop); does not wait."""
        if self._finished:
            self._refuse("pause")
        if self._paused:
            if reason != self.pause_reason:  # e.g. a breakpoint hit while paused: report it
                self.pause_reason = reason
                self._set_status(JobStatus.PAUSED, reason)
            return
        self._paused = True
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
                while self._running > self._parked and not self._finished:
                    fut: asyncio.Future[None] = self.loop.create_future()
                    self._quiet_waiters.append(fut)
                    await fut
        except TimeoutError:
            raise JobTimeoutError(
                f"job {self.id} is paused but {self._running - self._parked} call(s) still "
                f"running after {timeout_s}s"
            ) from None
        return PausePoint(
            at=self.paused_at or time.time(), reason=self.pause_reason or reason, queues=self.queues()
        )

    async def resume(self) -> ResumeReport:
        """Continue; the report's ``warnings`` name every slot that is full or near full."""
        if self._finished:
            self._refuse("resume")
        if not self._paused:
            raise NotPausedError(f"job {self.id} is not paused")
        paused_s = time.time() - (self.paused_at or time.time())
        snapshot = self.queues()
        self._paused = False
        self._stepping = set()
        self.pause_reason = None
        self.paused_at = None
        self._set_status(JobStatus.RUNNING, None)
        self._resumed.set_result(None)
        self._tracker.check_all()
        return ResumeReport(paused_s=paused_s, warnings=fill_warnings(snapshot), queues=snapshot)

    def allow_while_paused(self, routines: Iterable[str]) -> None:
        """Let these routines start calls while the job stays paused (a debugger step);
        an empty set restores the full pause."""
        names = set(routines)
        for name in names:
            self._runner(name)
        self._stepping = names
        if self._paused and names:
            # wake the waiting runners: the allowed ones run, the others wait again
            old, self._resumed = self._resumed, self.loop.create_future()
            old.set_result(None)

    def pause_routine(self, routine: str) -> None:
        """Stop starting calls of one routine; the rest runs until backpressure reaches it."""
        runner = self._runner(routine)
        if not runner.paused:
            runner.paused = True
            runner.resumed = self.loop.create_future()

    def resume_routine(self, routine: str) -> None:
        runner = self._runner(routine)
        if runner.paused:
            runner.paused = False
            runner.resumed.set_result(None)
            runner.wake()

    def _runner(self, routine: str) -> RoutineRunner:
        try:
            return self.runners[routine]
        except KeyError:
            raise UnknownSlotError(f"flow {self.flow.name!r} has no routine {routine!r}") from None

    # -- observing ----------------------------------------------------------------------

    def queues(self) -> dict[str, QueueStats]:
        """Every slot's statistics now."""
        paused = self._paused
        return {path: q.stats(paused or q.runner.paused) for path, q in self._queues.items()}

    def queued_items(self, slot: str, limit: int = 10) -> list[Any]:
        """The first ``limit`` items waiting in ``slot``."""
        q = self._queue(slot)
        return [item for _, item in zip(range(limit), q.items, strict=False)]

    def routine_state(self, routine: str) -> dict[str, Any]:
        return self._runner(routine).state

    @property
    def stats(self) -> JobStats:
        end = self._ended if self._ended is not None else time.monotonic()
        return JobStats(
            slots=self.queues(),
            routines={
                name: RoutineStats(
                    routine=name,
                    calls=r.calls,
                    failures=r.failures,
                    retries=r.retries,
                    busy_s=r.busy_s,
                    active=r.active,
                )
                for name, r in self.runners.items()
            },
            duration_s=end - self._started,
        )
