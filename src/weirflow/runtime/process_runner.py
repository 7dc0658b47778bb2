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
"""

from __future__ import annotations

import pickle
import time
from typing import TYPE_CHECKING, Any

from ..errors import UnpicklableError, WorkerDiedError
from .process import MAX_BATCH
from .runner import RoutineRunner, _Act
from .shared_queue import emit_from_thread
from .threads import ThreadRunner, _Call

if TYPE_CHECKING:
    from .context import Context
    from .process import _Child

Ends = list[tuple[Any, BaseException | None, float]]
Results = list[tuple[bool, list[tuple[str, Any]], BaseException | None, float]]

UNPICKLABLE = "unpicklable"


def _send(runner: RoutineRunner, act: _Act, calls: bytes, busy: set[_Child] | None = None) -> Any:
    """Run the pickled ``calls`` on a child of the pool (blocking); the child's reply.
    Raises what pickling the routine or its state raises, or ``WorkerDiedError``."""
    pool = runner.job.engine.processes
    key, blob = pool.routine_key(runner.routine)
    child = pool.checkout()
    if busy is not None:
        busy.add(child)
    try:
        known = key in child.known  # the routine is unpickled there already: not sent again
        head = (key, None if known else blob, act.method, act.wants_ctx, runner.job.id, runner.name)
        data = pickle.dumps((*head, frozenset(runner.routine.events), dict(runner.state), calls))
        reply = child.call(data)
        child.known.add(key)
        return reply
    finally:
        if busy is not None:
            busy.discard(child)
        pool.checkin(child)


class ProcessRunner(ThreadRunner):
    """A process routine in a job without a journal: batches per child request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.children: set[_Child] = set()  # children running this routine's calls now

    def _take_calls_locked(self, act: _Act) -> list[_Call]:
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

    def _run_calls(self, act: _Act, calls: list[_Call], ctx: Context, ends: Ends) -> list[float]:
        job = self.job
        times = [-1.0] * len(calls)
        attempts = [1] * len(calls)
        pending = list(range(len(calls)))
        track_ends = bool(job.hook_set.handler_end)
        while pending:
            if job.finished or self.stopping:
                return times
            batch, results, state = self._run_batch(act, calls, attempts, pending)
            if state is not None:
                self.state.clear()
                self.state.update(state)
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
        self, act: _Act, calls: list[_Call], attempts: list[int], pending: list[int]
    ) -> tuple[list[int], Results, dict[str, Any] | None]:
        """Send the pending calls to a child: (the calls the results are for, the results,
        the state after them)."""
        args = {i: act.args(calls[i].taken) for i in pending}
        try:
            data = pickle.dumps([(attempts[i], args[i]) for i in pending])
        except Exception:  # noqa: BLE001 - find which items cannot be pickled
            self._drop_unpicklable(calls, pending, args)
            return [], [], None
        try:
            results, state = _send(self, act, data, self.children)
        except WorkerDiedError as e:
            # the calls before the one it was in ran, but their results died with it: they
            # stay pending and run again; the one it was in failed this attempt
            return pending[e.index : e.index + 1], [(False, [], e, 0.0)], None
        except Exception as e:  # noqa: BLE001 - the routine's state cannot be pickled
            return pending[:1], [(False, [], e, 0.0)], None
        return pending, results, state

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
    handler body runs in a child, its emits are made here when it returns."""

    async def _invoke_sync(self, act: _Act, args: tuple[Any, ...], ctx: Context) -> None:
        if act.kind == "end":  # on_end runs in this process
            await super()._invoke_sync(act, args, ctx)
            return
        items = args[:-1] if act.wants_ctx else args
        try:
            data = pickle.dumps([(ctx.attempt, items)])
        except Exception as e:
            raise UnpicklableError(f"cannot be sent to the routine's process: {type(e).__name__}: {e}") from e
        loop = self.job.loop
        results, state = await loop.run_in_executor(self.job.engine.pool, _send, self, act, data)
        if state is not None:
            self.state.clear()
            self.state.update(state)
        ok, emitted, error, _ = results[0]
        if not ok:
            raise error
        for event, item in emitted:
            await self.emit(event, item, ctx)
