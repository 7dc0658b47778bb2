"""The runner of ``executor = "process"`` routines in a job without a journal: their
handler calls go to the engine's ``ProcessPool`` (``runtime.process``) in batches.

``ProcessRunner`` works like a thread runner whose worker takes a batch of queued items
per turn (up to ``MAX_BATCH``), sends them to a child in one request and applies the
reply: per call, its emits (straight into the target slots, waiting while one is full),
then its settlement; a failed call goes through the error policy on the worker (a retry
runs that call alone, before the rest of its batch), an item that cannot be pickled is a
dead letter with reason ``unpicklable``. A chain of process routines runs in one request
(``process_chain``) or, with ``concurrency = 1``, in waves (``process_wave``). With a
journal, ``ProcessCallRunner`` (``process_call``) runs each call on the usual path; both
keep ``ctx.state`` exact with ``StateTurns`` (``process_call``).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import WorkerDiedError
from .activation import BoundActivation
from .process import MAX_BATCH, STAGE, NoItem, Results
from .process_call import Children, StateTurns, send_calls
from .process_chain import Chain, cut
from .process_wave import Wave, wave_stages_locked
from .runner import RoutineRunner
from .shared_queue import SharedSlotQueue, emit_from_thread
from .threads import ThreadRunner, _Call

if TYPE_CHECKING:
    from .context import Context

Ends = list[tuple[Any, BaseException | None, float]]

UNPICKLABLE = "unpicklable"
#: held while a process routine's request applies the states it left (its own and its
#: chain's: ``Chain.settles``), so that every state a reply carries is checked and applied
#: in one step, whatever other requests return meanwhile
SETTLING = threading.Lock()
#: held while a job's process chains are found and cut (``_spans``, ``process_chain.cut``)
CUTTING = threading.Lock()


def _chain_stage(runner: ProcessRunner) -> ProcessRunner | None:
    """The process routine that ``runner``'s calls may hand their emits to inside their child
    request (``Chain``), judged on the flow alone: ``runner`` has one event, wired to one
    slot and no flow output; that slot is the only slot of a routine run by a
    ``ProcessRunner`` with one ``each`` handler, whose error policy fails the job at the
    first failure (no retry, no dead letter: what a failed call of a later stage needs is
    then the job's end, which settles everything its request held)."""
    events = runner.routine.events
    if len(events) != 1:
        return None
    route = runner.routes.get(next(iter(events)))
    if route is None or route.output is not None or len(route.connections) != 1:
        return None
    q = route.connections[0].queue
    nxt = q.runner
    if type(nxt) is not ProcessRunner or not isinstance(q, SharedSlotQueue):
        return None
    acts = nxt.acts
    if len(acts) != 1 or acts[0].kind != "each" or len(nxt.queues) != 1 or len(nxt.routine.events) > 1:
        return None
    policy = nxt.policy
    if policy.retries != 0 or policy.then != "fail_job":
        return None
    return nxt


def _spans(runners: Iterable[RoutineRunner], processes: int) -> None:
    """Work out, for every process routine of a job, the next one its requests may take
    along (``_chain_stage``), and cut each chain into segments (``process_chain.cut``)."""
    procs = [r for r in runners if isinstance(r, ProcessRunner)]
    for r in procs:
        r.next_stage = _chain_stage(r)
    later = {id(r.next_stage) for r in procs if isinstance(r.next_stage, ProcessRunner)}
    for head in procs:
        if id(head) in later:
            continue  # not the first routine of its chain
        chain = [head]
        while isinstance(nxt := chain[-1].next_stage, ProcessRunner) and nxt not in chain:
            chain.append(nxt)
        for r in chain:
            r.chain_head = head
        head.chain = chain
        cut(chain, processes)
    # (the routines of a cycle of process routines have no head: their span stays 0)


def _put_all(emitter: RoutineRunner, results: Results) -> bool:
    """Make every emit of a request's calls at once, if they all succeeded and emitted into
    one plain route whose slots are shared and have room for them all (one lock per slot
    for the batch, where ``emit_from_thread`` takes it per item); else nothing is emitted
    (``False``: the calls' emits are made one by one, with the usual waits and failures)."""
    items: list[Any] = []
    name = None
    for ok, emitted, _, _ in results:
        if not ok:
            return False
        for event, item in emitted:
            if name is None:
                name = event
            elif event != name:
                return False
            items.append(item)
    if name is None:
        return True  # nothing emitted
    direct = emitter.thread_routes.get(name)
    if direct is None:
        return False
    route, queues = direct
    if not route.plain or emitter.job.finished or len(queues) != 1:
        return False
    if not queues[0].put_all_from_thread(items):
        return False
    if route.output is not None:
        route.output.extend(items)
    return True


#: what ``ProcessRunner._run_batch`` returns: the calls the results are for, the results,
#: the later stages that ran in the request (``Chain``) and the failure of one of their calls
Batch = tuple[list[int], Results, "Chain | None", "tuple[int, Any, BaseException, float] | None"]


class ProcessRunner(ThreadRunner):
    """A process routine in a job without a journal: batches per child request."""

    runs_in_a_row = False  # its turns send batches to a child

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.children = Children()  # children running this routine's calls now
        self.turns = StateTurns()  # under self.lock
        self.turn = threading.Lock()  # held by the request whose turn it is (turns.serial)
        self.chained = 0  # requests of other routines that run its calls now (``Chain``)
        self.next_stage: ProcessRunner | bool | None = False  # ``_chain_stage(self)``, once known
        self.span = 0  # how many later stages its requests take along at most (``process_chain.cut``)
        self.chain_head: ProcessRunner | None = None  # the first routine of its chain (``_spans``)
        self.chain: list[ProcessRunner] = []  # (of a chain's head) its routines, in order
        self.cut_at_calls = 0  # (of a chain's head) cut the chain again at this many calls
        self.hop_s = 0.0  # CPU time of this routine's worker threads around its requests
        self.hop_items = 0  # the items those requests carried
        self.cpu_s = 0.0  # CPU time of its calls in children (``process_chain.cut``; ``busy_s`` is wall time)
        self.cpu_calls = 0  # the calls ``cpu_s`` is for
        self.wave_off = False  # a wave met what it cannot send: batches take the usual path

    def _may_take_locked(self) -> bool:
        return not self.chained and super()._may_take_locked()

    runs_waves = True

    def wave_failed(self, call: _Call, runner: ProcessRunner, item: Any, error: Exception) -> None:
        """A call of ``runner`` (this routine or a later one of its chain) failed in one of
        this routine's wave requests (``process_wave``): on the loop, the job fails naming
        it and the item is its dead letter (``call`` holds it, if ``runner`` is this one)."""
        if runner is self:
            self._on_loop(call, self._give_up(call, error, 1))
        else:
            self._on_loop(call, runner.fail_chained(item, error))

    def wave_call_ended_locked(self) -> None:
        """A wave request of this routine ended (``busy`` counted down): a waiting ``pause``
        may return now."""
        self._quiet_changed_locked()

    def _run_wave_locked(self, act: BoundActivation, ctx: Context) -> bool:
        """With ``concurrency = 1``, two children or more and the default error policy, the
        first routine of a process chain sends every batch through the whole chain, several
        batches in flight at once, each routine's turn passed between them
        (``process_wave``); whether it did (it returns once nothing is in flight)."""
        job = self.job
        if (
            self.wave_off
            or act.kind != "each"
            or len(self.acts) != 1
            or self.concurrency != 1
            or job.engine.max_processes < 2
            or self.policy.retries != 0
            or self.policy.then != "fail_job"
            or self.watch_start
            or job.hook_set.handler_end
        ):
            return False
        if self.next_stage is False:
            with CUTTING:
                if self.next_stage is False:
                    _spans(job.runners.values(), job.engine.max_processes)
        if self.chain_head is not self or len(self.chain) < 2 or wave_stages_locked(self) is None:
            return False
        self.lock.release()
        try:
            Wave(self, act, ctx).run()
        finally:
            self.lock.acquire()
        return True

    def kick_after_chain_locked(self) -> None:
        """A request that ran this routine's calls (``Chain``) returned: a waiting ``pause``
        may return, queued items may be taken, and the routine may have gone idle."""
        self._quiet_changed_locked()
        self._kick_locked()
        if self.busy == 0 and self.active == 0 and not self.has_work() and not self.stopping:
            self._post_idle_locked()

    def _join_chain(self) -> Chain | None:
        """The routines after this one that this request runs too (``Chain``), marked as
        running under their locks; ``None`` if none may join now."""
        job = self.job
        if job.hook_set.handler_end or job.paused:
            return None
        if self.next_stage is False:
            with CUTTING:
                if self.next_stage is False:
                    _spans(job.runners.values(), job.engine.max_processes)
        head = self.chain_head
        if head is not None and head.cpu_calls >= head.cut_at_calls and head.chain:
            with CUTTING:  # cut again on what the calls cost so far (``process_chain.cut``)
                if head.cpu_calls >= head.cut_at_calls:
                    cut(head.chain, job.engine.max_processes)
        stages: list[ProcessRunner] = []
        started: list[tuple[int, dict[str, Any]]] = []
        prev: ProcessRunner = self
        while len(stages) < self.span:
            stage = prev.next_stage
            if not isinstance(stage, ProcessRunner) or stage is self or stage in stages:
                break
            route = next(iter(prev.routes.values()))
            if not route.plain:
                break
            with stage.lock:
                if (
                    stage.acts[0].queues[0].items  # items wait there: they go first, in order
                    or stage.busy > stage.chained  # its own calls run: they settle its state
                    or stage.busy >= stage.concurrency
                    or stage.paused
                    or stage.stopping
                    or stage.watch_start
                    or stage.turns.serial
                    or job.finished
                ):
                    break
                stage.chained += 1
                stage.busy += 1
                stage.idle_told = False
                started.append(stage.turns.start(stage.state))
            stages.append(stage)
            prev = stage
        return Chain(stages, started) if stages else None

    def _take_calls_locked(self, act: BoundActivation) -> list[_Call]:
        if act.kind != "each":
            return [_Call(act.take_locked())]
        q = act.queues[0]
        n = min(MAX_BATCH, max(1, len(q.items) // self.concurrency))
        return [_Call(act.take_locked()) for _ in range(n) if q.items]

    def _stop(self) -> None:
        super()._stop()
        with self.lock:  # their calls were settled as the job's end: stop them
            self.children.kill_all()

    def _run_calls(self, act: BoundActivation, calls: list[_Call], ctx: Context, ends: Ends) -> list[float]:
        t0 = time.thread_time()
        try:
            return self._run_requests(act, calls, ctx, ends)
        finally:  # what a hop through the parent costs it (``process_chain.cut``)
            dt = time.thread_time() - t0
            with self.lock:
                self.hop_s += dt
                self.hop_items += len(calls)

    def _run_requests(
        self, act: BoundActivation, calls: list[_Call], ctx: Context, ends: Ends
    ) -> list[float]:
        job = self.job
        times = [-1.0] * len(calls)
        attempts = [1] * len(calls)
        pending = list(range(len(calls)))
        while pending:
            if job.finished or self.stopping:
                return times
            ran = self._run_batch(act, calls, attempts, pending)
            if ran is None:
                continue  # it changed a state that changed meanwhile: run it again
            batch, results, chain, failed = ran
            try:
                if self._apply(
                    act, calls, ctx, ends, times, attempts, pending, batch, results, chain, failed
                ):
                    return times
            finally:
                if chain is not None:
                    chain.release()
        return times

    def _apply(
        self,
        act: BoundActivation,
        calls: list[_Call],
        ctx: Context,
        ends: Ends,
        times: list[float],
        attempts: list[int],
        pending: list[int],
        batch: list[int],
        results: Results,
        chain: Chain | None,
        failed: tuple[int, Any, BaseException, float] | None,
    ) -> bool:
        """Apply one request's results (emits, then the error policy of a failed call);
        ``pending`` keeps the calls still to run. Whether the turn must end now."""
        job = self.job
        track_ends = bool(job.hook_set.handler_end)
        emitter: RoutineRunner = self if chain is None else chain.stages[-1]
        finished: set[int] = {i for i in pending if calls[i].settled}  # unpicklable
        put = failed is None and _put_all(emitter, results)
        for n, (i, (ok, emitted, error, dt)) in enumerate(zip(batch, results, strict=False)):
            if ok and not put:
                try:
                    for event, item in emitted:
                        emit_from_thread(emitter, event, item, ctx)
                except Exception as e:  # noqa: BLE001 - an emit's failure is the call's
                    ok, error = False, e
            if ok and failed is not None and n == len(results) - 1 and chain is not None:
                self._chain_failed(calls[i], chain, failed)
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
                return True
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
        pending[:] = [i for i in pending if i not in finished]
        return False

    def _chain_failed(self, call: _Call, chain: Chain, failed: tuple[int, Any, BaseException, float]) -> None:
        """A later stage's call failed in this request (``Chain``): its policy fails the job
        (``_chain_stage``), and the item it failed on is its dead letter (unless it died
        with the child)."""
        stage, item, error, dt = failed
        runner = chain.stages[stage - 1]
        with runner.lock:
            runner.calls += 1
            runner.failures += 1
            runner.busy_s += dt
        self._on_loop(call, runner.fail_chained(item, error))

    async def fail_chained(self, item: Any, error: BaseException) -> None:
        """On the loop: a call of this routine in another's request failed (``Chain``)."""
        from ..errors import Retry

        text = f"{type(error).__name__}: {error}"
        if isinstance(error, Retry):
            text = f"Retry: retries exhausted after 1 attempt(s) ({error})"
        self.job.fail(f"routine {self.name!r} failed: {text}")
        if not isinstance(item, NoItem):
            self.acts[0].queues[0].refuse(item, "handler_failed", text)

    def _run_batch(
        self, act: BoundActivation, calls: list[_Call], attempts: list[int], pending: list[int]
    ) -> Batch | None:
        """Send the pending calls to a child and apply the state they left: (the calls the
        results are for, the results, the later stages that ran in the request and the
        failure of one of theirs), or ``None`` if they must run again (see
        ``StateTurns``). The caller releases the chain."""
        args = {i: act.args(calls[i].taken) for i in pending}
        try:
            data = pickle.dumps([(attempts[i], args[i]) for i in pending], protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - find which items cannot be pickled
            self._drop_unpicklable(calls, pending, args)
            return [], [], None, None
        with self.lock:
            serial = self.turns.serial
        if serial:
            self.turn.acquire()  # a call waiting for its turn is in flight, as in its child
        chain = self._join_chain() if act.kind == "each" else None
        keep = False
        try:
            with self.lock:
                started = self.turns.start(self.state)
            try:
                results, state, later, cpu_s = send_calls(self, act, data, self.children, started[1], chain)
            except WorkerDiedError as e:
                stage, index = divmod(e.index, STAGE)
                if stage and chain is not None:  # in a later stage's call: that call failed
                    keep = True
                    return (
                        pending[index : index + 1],
                        [(True, [], None, 0.0)],
                        chain,
                        (stage, NoItem(), e, 0.0),
                    )
                # the calls before the one it was in ran, but their results died with it: they
                # stay pending and run again; the one it was in failed this attempt
                return pending[index : index + 1], [(False, [], e, 0.0)], None, None
            except Exception as e:  # noqa: BLE001 - the routine's state cannot be pickled
                return pending[:1], [(False, [], e, 0.0)], None, None
            with SETTLING:
                if chain is not None and not chain.settles(later):
                    return None  # a later stage's state changed meanwhile: run it all again
                with self.lock:
                    if not self.turns.settle(self.state, started, state):
                        return None
                    self.cpu_s += cpu_s
                    self.cpu_calls += len(results)
                failed = chain.apply(later) if chain is not None else None
            keep = True
            return pending, results, chain, failed
        finally:
            if chain is not None and not keep:
                chain.release()
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
