"""Runners of ``executor = "process"`` routines: their handler calls go to the engine's
``ProcessPool`` (``runtime.process``).

Without a journal, ``ProcessRunner`` works like a thread runner whose worker takes a
batch of queued items per turn (up to ``MAX_BATCH``), sends them to a child in one
request and applies the reply: per call, its emits (straight into the target slots,
waiting while one is full), then its settlement; a failed call goes through the error
policy on the worker (a retry runs that call alone, before the rest of its batch), an
item that cannot be pickled is a dead letter with reason ``unpicklable``. With a
journal, ``ProcessCallRunner`` keeps the runtime's usual one-call-at-a-time path (each
step recorded) and only the handler's body runs in a child.

``ctx.state`` with ``concurrency > 1`` (``StateTurns``): requests run at once while none
of them changes the state. The first that comes back with a changed state makes the
routine's requests take turns from then on (each starts from the state the one before
left); a request that changed the state while another's change was applied after it
started is run again from the new state (its results are dropped, as when a child dies).
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import UnpicklableError, WorkerDiedError
from .activation import BoundActivation
from .process import MAX_BATCH
from .runner import RoutineRunner
from .shared_queue import emit_from_thread
from .threads import ThreadRunner, _Call

if TYPE_CHECKING:
    from .context import Context
    from .process import _Child

Ends = list[tuple[Any, BaseException | None, float]]
Results = list[tuple[bool, list[tuple[str, Any]], BaseException | None, float]]

UNPICKLABLE = "unpicklable"


class StateTurns:
    """Keeps a process routine's ``ctx.state`` exact when its requests run at once.

    Each request carries a copy of the state and comes back with the state it left. While
    no request changes it, they run concurrently. ``settle`` applies what a request left:
    a change is applied only if no other change was applied since the request started
    (else the request must run again); after the first change, ``serial`` is set and
    requests take turns (the caller holds a turn from sending to ``settle``), so every
    request starts from the state the one before left. Callers serialize ``start`` and
    ``settle`` (the runner's lock, or the event loop).
    """

    __slots__ = ("serial", "version")

    def __init__(self) -> None:
        self.version = 0  # changes applied so far
        self.serial = False  # the state has changed once: requests take turns

    def start(self, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A request starts: (the version it starts from, the state it is sent)."""
        return self.version, dict(state)

    def settle(
        self, state: dict[str, Any], started: tuple[int, dict[str, Any]], left: dict[str, Any] | None
    ) -> bool:
        """Apply ``left`` (the state a request left; ``None``: it could not come back) to
        ``state``; ``False`` if the request changed a state that changed meanwhile."""
        version, sent = started
        if left is None or _same(left, sent):
            return True  # read only (or nothing came back): nothing to apply
        self.serial = True
        if version != self.version:
            return False
        self.version += 1
        state.clear()
        state.update(left)
        return True


def _same(left: dict[str, Any], sent: dict[str, Any]) -> bool:
    try:
        return bool(left == sent)
    except Exception:  # noqa: BLE001 - values that cannot be compared count as changed
        return False


def _send(
    runner: RoutineRunner,
    act: BoundActivation,
    calls: bytes,
    busy: set[_Child] | None = None,
    state: dict[str, Any] | None = None,
) -> Any:
    """Run the pickled ``calls`` on a child of the pool (blocking), sending ``state`` (by
    default the routine's); the child's reply. Raises what pickling the routine or its
    state raises, or ``WorkerDiedError``."""
    pool = runner.job.engine.processes
    key, blob = pool.routine_key(runner.routine)
    child = pool.checkout()
    if busy is not None:
        busy.add(child)
    try:
        known = key in child.known  # the routine is unpickled there already: not sent again
        head = (key, None if known else blob, act.method, act.wants_ctx, runner.job.id, runner.name)
        sent = dict(runner.state) if state is None else state
        data = pickle.dumps((*head, frozenset(runner.routine.events), sent, calls))
        reply = child.call(data)
        child.known.add(key)
        return reply
    finally:
        if busy is not None:
            busy.discard(child)
        pool.checkin(child)


class ProcessRunner(ThreadRunner):
    """A process routine in a job without a journal: batches per child request."""

    runs_in_a_row = False  # its turns send batches to a child

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.children: set[_Child] = set()  # children running this routine's calls now
        self.turns = StateTurns()  # under self.lock
        self.turn = threading.Lock()  # held by the request whose turn it is (turns.serial)

    def _take_calls_locked(self, act: BoundActivation) -> list[_Call]:
        if act.kind != "each":
            return [_Call(act.take_locked())]
        q = act.queues[0]
        n = min(MAX_BATCH, max(1, len(q.items) // self.concurrency))
        return [_Call(act.take_locked()) for _ in range(n) if q.items]

    def _stop(self) -> None:
        super()._stop()
        with self.lock:
            children = list(self.children)
        for child in children:  # their calls were settled as the job's end: stop them
            child.kill()

    def _run_calls(self, act: BoundActivation, calls: list[_Call], ctx: Context, ends: Ends) -> list[float]:
        job = self.job
        times = [-1.0] * len(calls)
        attempts = [1] * len(calls)
        pending = list(range(len(calls)))
        track_ends = bool(job.hook_set.handler_end)
        while pending:
            if job.finished or self.stopping:
                return times
            ran = self._run_batch(act, calls, attempts, pending)
            if ran is None:
                continue  # it changed a state that changed meanwhile: run it again
            batch, results = ran
            finished: set[int] = {i for i in pending if calls[i].settled}  # unpicklable
            for i, (ok, emitted, error, dt) in zip(batch, results, strict=False):
                if ok:
                    try:
                        for event, item in emitted:
                            emit_from_thread(self, event, item, ctx)
                    except Exception as e:  # noqa: BLE001 - an emit's failure is the call's
                        ok, error = False, e
                call = calls[i]
                if track_ends:
                    ends.append((act.point_item(call.taken), error, dt))
                if ok:
                    times[i] = dt
                    finished.add(i)
                    continue
                err = error if isinstance(error, Exception) else WorkerDiedError(str(error))
                with self.lock:
                    self.busy_s += dt
                    self.calls += 1
                    self.failures += 1
                if call.settled:
                    return times
                delay = self._retry_delay(err, attempts[i])
                if delay is None:
                    self._on_loop(call, self._give_up(call, err, attempts[i]))
                    finished.add(i)
                else:
                    with self.lock:
                        self.retries += 1
                    attempts[i] += 1
                    self._backoff(delay)
                break  # the calls after a failure did not run: they go in the next request
            pending = [i for i in pending if i not in finished]
        return times

    def _run_batch(
        self, act: BoundActivation, calls: list[_Call], attempts: list[int], pending: list[int]
    ) -> tuple[list[int], Results] | None:
        """Send the pending calls to a child and apply the state they left: (the calls the
        results are for, the results), or ``None`` if they must run again (see
        ``StateTurns``)."""
        args = {i: act.args(calls[i].taken) for i in pending}
        try:
            data = pickle.dumps([(attempts[i], args[i]) for i in pending])
        except Exception:  # noqa: BLE001 - find which items cannot be pickled
            self._drop_unpicklable(calls, pending, args)
            return [], []
        with self.lock:
            serial = self.turns.serial
        if serial:
            self.turn.acquire()  # a call waiting for its turn is in flight, as in its child
        try:
            with self.lock:
                started = self.turns.start(self.state)
            try:
                results, state = _send(self, act, data, self.children, started[1])
            except WorkerDiedError as e:
                # the calls before the one it was in ran, but their results died with it: they
                # stay pending and run again; the one it was in failed this attempt
                return pending[e.index : e.index + 1], [(False, [], e, 0.0)]
            except Exception as e:  # noqa: BLE001 - the routine's state cannot be pickled
                return pending[:1], [(False, [], e, 0.0)]
            with self.lock:
                if not self.turns.settle(self.state, started, state):
                    return None
            return pending, results
        finally:
            if serial:
                self.turn.release()

    def _drop_unpicklable(self, calls: list[_Call], pending: list[int], args: dict[int, Any]) -> list[int]:
        keep: list[int] = []
        for i in pending:
            try:
                pickle.dumps(args[i])
            except Exception as e:  # noqa: BLE001 - whatever pickle raised is the reason
                text = f"cannot be sent to the routine's process: {type(e).__name__}: {e}"
                self._on_loop(calls[i], self._dead(calls[i], text))
            else:
                keep.append(i)
        return keep

    async def _dead(self, call: _Call, text: str) -> None:
        self._settle_call(call, (UNPICKLABLE, text))

    def _backoff(self, delay: float) -> None:
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


class ProcessCallRunner(RoutineRunner):
    """A process routine on the usual call path (a journal records its steps): each call's
    handler body runs in a child, its emits are made here when it returns; calls running at
    once keep ``ctx.state`` exact with ``StateTurns``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turns = StateTurns()  # on the loop
        self.turn = asyncio.Lock()

    async def _invoke_sync(self, act: BoundActivation, args: tuple[Any, ...], ctx: Context) -> None:
        if act.kind == "end":  # on_end runs in this process
            await super()._invoke_sync(act, args, ctx)
            return
        items = args[:-1] if act.wants_ctx else args
        try:
            data = pickle.dumps([(ctx.attempt, items)])
        except Exception as e:
            raise UnpicklableError(f"cannot be sent to the routine's process: {type(e).__name__}: {e}") from e
        loop = self.job.loop
        pool = self.job.engine.pool
        while True:  # again while it changed a state that another call changed meanwhile
            serial = self.turns.serial
            if serial:
                await self.turn.acquire()
            try:
                started = self.turns.start(self.state)
                results, state = await loop.run_in_executor(pool, _send, self, act, data, None, started[1])
                if self.turns.settle(self.state, started, state):
                    break
            finally:
                if serial:
                    self.turn.release()
        ok, emitted, error, _ = results[0]
        if not ok:
            raise error
        for event, item in emitted:
            await self.emit(event, item, ctx)
