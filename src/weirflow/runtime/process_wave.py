"""Process waves: a process chain of ``concurrency = 1`` routines run whole by every request,
with several requests in flight on different children, each routine's turn handed from
one request to the next.

A request of the chain's first routine (``ProcessRunner``) carries a batch of its items
and runs them through every routine of the chain in its child, one routine after the
other (all the batch's calls of the first, then all of the second on what they emitted,
and so on). Before it runs a routine it must hold that routine's *turn*: the request
before it (the batch of the items before) has finished that routine's calls, and the
state they left comes with the turn. So each routine still makes one call at a time, in
item order, and each call sees the state the one before left, while the children work
on different routines of the same chain at once: with two children, one runs the third
routine on a batch while the other runs the second on the next batch. (Cut into
segments, one request of each in flight, the chain's rate was capped by its largest
segment: 5 routines on 2 children at 5/3 of one core.)

The parent hands the turns over (``Wave``): a child says when it has finished a routine
(with its state and counts), the parent applies that, and passes the turn, with the
state, to the child that holds the next batch, unless that child had it from the child
before already: once the next batch is sent, the parent tells the child of the batch
before where it went, and that child passes its turns on itself (``process_wave_child``).
The items between the routines never leave the child; the last routine's emits come back
with the request's end, and the parent makes them, in batch order, then settles the first
routine's items.

What a child does with a request is in ``process_wave_child``.
"""

from __future__ import annotations

import contextlib
import itertools
import pickle
import select
from collections import deque
from typing import TYPE_CHECKING, Any

from ..errors import WorkerDiedError
from .process import MAX_BATCH, STAGE, NoItem
from .process_chain import Chain
from .process_wave_child import NEXT, TURN, WAVE
from .shared_queue import emit_from_thread

if TYPE_CHECKING:
    from .activation import BoundActivation
    from .context import Context
    from .process import _Child
    from .process_runner import ProcessRunner
    from .threads import _Call

#: items per wave request, at most, and in its first request (doubled at each request up
#: to the most). Each routine's turn costs the parent a thread wake-up and a few system
#: calls per batch (256-item batches cost it 10-11 us per item, 64-item ones 15-20), but
#: larger batches made the wave slower by the wall clock in every paired run on the loaded
#: machine (a turn that waits costs a whole routine's batch): 64 it is
WAVE_BATCH = MAX_BATCH
FIRST_BATCH = 16
#: a wave request's token, unique in this process: what the turns the children pass each
#: other name (a turn for a request that is gone is dropped)
_TOKENS = itertools.count()


# -- in the parent --------------------------------------------------------------------------


class _Request:
    """One batch of a wave in flight on a child."""

    __slots__ = ("busy0", "busy_all", "call", "chain", "child", "emitted", "fds", "inputs", "seq", "token")

    def __init__(self, seq: int, child: _Child, call: _Call, chain: Chain) -> None:
        self.seq = seq
        self.token = next(_TOKENS)
        self.child = child
        self.call = call  # the first routine's items (one ``_Call`` for the batch)
        self.chain = chain  # the later routines, marked as running (``Chain.release``)
        self.busy0 = 0.0  # the first routine's busy time, from its "done"
        self.busy_all = 0.0  # every routine's (``Wave.pace``)
        self.emitted: list[Any] | None = None  # the last routine's emits, once ended
        self.fds: tuple[int, ...] = ()  # what the wave polls for it: its pipe, its sentinel
        # the items of the routine its child runs now (pickled, from the routine before's
        # "done"; ``None`` if they could not travel): the dead letter if the child dies there
        self.inputs: tuple[int, bytes | None] = (0, None)


def wave_stages_locked(head: ProcessRunner) -> list[ProcessRunner] | None:
    """The later routines of ``head``'s chain if a wave request may take them all now
    (``head``'s lock held; each stage checked under its own): what ``_join_chain`` asks of
    a stage taken along, for every routine of the chain."""
    job = head.job
    chain = head.chain
    if len(chain) < 2 or job.engine.max_processes < 2 or job.paused or job.finished or head.stopping:
        return None
    stages = chain[1:]
    prev = head
    for stage in stages:
        if not next(iter(prev.routes.values())).plain:
            return None
        with stage.lock:
            if (
                stage.acts[0].queues[0].items
                or stage.busy > stage.chained
                or stage.paused
                or stage.stopping
                or stage.watch_start
            ):
                return None
        prev = stage
    return stages


class Wave:
    """The parent's side of a wave (see the module), run on the first routine's worker."""

    def __init__(self, head: ProcessRunner, act: BoundActivation, ctx: Context) -> None:
        self.head = head
        self.act = act
        self.ctx = ctx
        self.job = head.job
        self.pool = head.job.engine.processes
        self.width = head.job.engine.max_processes
        self.runners = head.chain  # every routine, the head first
        self.n = len(self.runners)
        self.keys = [self.pool.routine_key(r.routine) for r in self.runners]
        # the state each routine's turn carries now (pickled: taken when nothing is in
        # flight), and the last request that finished each routine
        self.turns: list[bytes] = []
        self.last_done = [-1] * self.n
        self.flight: deque[_Request] = deque()  # in batch order
        self.on_children = 0  # of which: not ended yet
        self.poll = select.poll()
        self.by_fd: dict[int, _Request] = {}
        self.seq = 0
        self.hooks = self.job.hook_set
        self.cap = FIRST_BATCH  # the next batch's size, at most
        # per child, the wall time its recent batches took per item through the whole
        # chain (an average, newer batches weigh more): how fast it goes now (``_size``)
        self.pace: dict[_Child, float] = {}
        # how the routines are named in a request to a child that knows them all
        self.known_specs = self._specs(None)

    def _specs(self, known: set[str] | None) -> tuple[Any, ...]:
        out = []
        for runner, (key, blob) in zip(self.runners, self.keys, strict=True):
            act = runner.acts[0]
            sent = None if known is None or key in known else blob
            out.append((key, sent, act.method, act.wants_ctx, runner.name, frozenset(runner.routine.events)))
        return tuple(out)

    def run(self) -> None:
        """Send batches while the chain may be taken whole and children are free; apply
        the replies in order; return once nothing is in flight (the head's lock not held)."""
        try:
            while True:
                self._send_more()
                if not self.flight:
                    return
                self._wait()
                self._send_more()  # a child freed by an end takes the next batch first
                self._apply_ended()
        finally:
            self._abandon()

    # -- sending --------------------------------------------------------------------------

    def _send_more(self) -> None:
        head = self.head
        while self.on_children < self.width and not head.wave_off:
            if self.job.finished or head.stopping or not self.act.queues[0].items:
                return
            try:
                child = self.pool.try_checkout()
                if child is None:
                    if self.flight:
                        return
                    child = self.pool.checkout()  # (nothing in flight: wait for a child)
            except WorkerDiedError:  # the pool is closed: the engine closes, the job has ended
                return
            if not self._send(child):
                self.pool.checkin(child)
                return

    def _send(self, child: _Child) -> bool:
        """Send the next batch to ``child``; ``False`` if none may go now."""
        head = self.head
        q: Any = self.act.queues[0]  # a SharedSlotQueue: its ``_locked`` methods
        with head.lock:
            stages = self._may_send_locked()
            if stages is None:
                return False
            if not self.flight:  # every turn is free: each with its routine's state now
                try:
                    self.turns = [
                        pickle.dumps(r.state, protocol=pickle.HIGHEST_PROTOCOL) for r in self.runners
                    ]
                except Exception:  # noqa: BLE001 - the usual path reports it
                    head.wave_off = True
                    return False
            # per child, a batch of about its share of what is queued
            n = self._size(child, min(self.cap, max(1, -(-len(q.items) // self.width))), len(q.items))
            self.cap = min(WAVE_BATCH, 2 * self.cap)
            taken = [(q, q.take_locked()) for _ in range(n)]
            try:
                items = pickle.dumps([item for _, item in taken], protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - an item that cannot travel: the usual path finds it
                q.untake_locked([item for _, item in taken])
                head.wave_off = True
                return False
            call = self._new_call(taken)
            head.live.add(call)
            head.busy += 1
            head.idle_told = False
            head.children.add(child)
            for stage in stages:
                with stage.lock:
                    stage.chained += 1
                    stage.busy += 1
                    stage.idle_told = False
        req = _Request(self.seq, child, call, Chain(stages, []))
        self.seq += 1
        g = 0  # the turns free for it now: those the batch before has finished
        while g < self.n and self.last_done[g] == req.seq - 1:
            g += 1
        known = child.known
        specs = self.known_specs if all(key in known for key, _ in self.keys) else self._specs(known)
        data = pickle.dumps(
            (WAVE, self.job.id, specs, items, tuple(self.turns[:g]), req.token),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        before = self.flight[-1] if self.flight else None
        self.flight.append(req)
        self.on_children += 1
        req.fds = (child.conn.fileno(), child.process.sentinel)
        for fd in req.fds:
            self.by_fd[fd] = req
            self.poll.register(fd, select.POLLIN)
        with contextlib.suppress(OSError):  # it died: its sentinel says so
            child.conn.send_bytes(data)
        child.known.update(key for key, _ in self.keys)
        if before is not None and before.emitted is None and child.address is not None and g < self.n:
            # the batch before passes the turns it has left straight to this one's child
            with contextlib.suppress(OSError):  # it died: its sentinel says so
                before.child.conn.send_bytes(
                    pickle.dumps(
                        (NEXT, before.token, req.token, child.address), protocol=pickle.HIGHEST_PROTOCOL
                    )
                )
        return True

    def _size(self, child: _Child, n: int, queued: int) -> int:
        """The size of ``child``'s next batch: ``n``, scaled by how fast the child goes
        against the others (``pace``). The children go at the pace of the slowest: each
        routine's turn passes from batch to batch, so a child whose batch takes longer
        per routine (its core shared with the parent or with other work) keeps the
        other waiting for its turns; batches sized to each child's speed take about the
        same time per routine on every child."""
        pace = self.pace
        own = pace.get(child)
        if own is None or own <= 0.0 or len(pace) < 2 or n < WAVE_BATCH:
            return n
        mean = sum(pace.values()) / len(pace)
        return max(1, min(queued, 2 * WAVE_BATCH, round(n * mean / own)))

    def _may_send_locked(self) -> list[ProcessRunner] | None:
        head = self.head
        if (
            not self.act.queues[0].items
            or head.paused
            or self.job.hook_set is not self.hooks
            or head.watch_start
            or self.job.hook_set.handler_end
        ):
            return None
        return wave_stages_locked(head)

    def _new_call(self, taken: list[Any]) -> _Call:
        from .threads import _Call

        return _Call(taken)

    # -- receiving ------------------------------------------------------------------------

    def _wait(self) -> None:
        """Wait for a message from a child in flight, and handle what came: one message per
        ready pipe (the poll is level-triggered: the next comes at the next wait), and a
        child's end once the messages it sent before it were read."""
        for fd, _ in self.poll.poll():
            req = self.by_fd.get(fd)
            if req is None:  # (ended or dropped by a message handled just before)
                continue
            conn = req.child.conn
            try:
                if fd != conn.fileno():  # its sentinel: it died (or was killed)
                    while req.emitted is None and conn.poll():
                        if not self._handle(req, conn.recv_bytes()):
                            return
                    if req.emitted is None:
                        self._died(req)
                    continue
                if not self._handle(req, conn.recv_bytes()):
                    return
            except (EOFError, OSError):
                self._died(req)

    def _handle(self, req: _Request, data: bytes) -> bool:
        """One message of ``req``'s child; ``False`` after a failure (everything dropped)."""
        msg = pickle.loads(data)  # noqa: S301 - from our child
        if msg[0] == "fail":
            _, j, index, item, error, dt = msg
            self._fail(req, j, index, item, error, dt)
            return False
        self._finished_stage(req, msg)
        return True

    def _finished_stage(self, req: _Request, msg: tuple[Any, ...]) -> None:
        """A routine's calls of ``req``'s batch are done: count them, apply its state, pass
        its turn to the next batch."""
        j, left, calls, busy_s, cpu_s, _, passed = msg[1:8]
        req.busy_all += busy_s
        # the turn first (unless the child passed it on itself): the child of the batch
        # after may be waiting for it
        after = None if passed else self._after(req)
        if after is not None:
            with contextlib.suppress(OSError):  # it died: its sentinel says so
                after.child.conn.send_bytes(pickle.dumps((TURN, j, left), protocol=pickle.HIGHEST_PROTOCOL))
        runner = self.runners[j]
        # the children pass turns to each other, so the "done" of a routine may come from
        # the batch after before the batch before's is read: only the latest batch's state
        # counts (the counts add up in any order)
        newer = req.seq > self.last_done[j]
        state = pickle.loads(left) if newer else runner.state  # noqa: S301 - from our child
        with runner.lock:
            if j:
                runner.acts[0].queues[0].passed_through_locked(calls)
                runner.calls += calls
                runner.busy_s += busy_s
            else:
                req.busy0 = busy_s
            runner.cpu_s += cpu_s
            runner.cpu_calls += calls
            if state != runner.state:
                runner.state.clear()
                runner.state.update(state)
        if newer:
            self.last_done[j] = req.seq
            self.turns[j] = left
        if msg[0] == "done":
            req.inputs = (j + 1, msg[6])
        else:
            req.emitted = pickle.loads(msg[6])  # noqa: S301 - from our child
            n = len(req.call.taken)
            if n >= WAVE_BATCH // 2:  # (small batches say little: their turns' waits weigh)
                per = req.busy_all / n
                old = self.pace.get(req.child)
                self.pace[req.child] = per if old is None else (old + per) / 2
            self.on_children -= 1
            self._forget(req)
            self.pool.checkin(req.child)
            with self.head.lock:
                self.head.children.discard(req.child)

    def _after(self, req: _Request) -> _Request | None:
        for i, r in enumerate(self.flight):
            if r is req:
                return self.flight[i + 1] if i + 1 < len(self.flight) else None
        return None

    def _forget(self, req: _Request) -> None:
        """Stop polling ``req``'s child (by the numbers registered: the pool may have closed
        its pipe already, when the engine closes)."""
        for fd in req.fds:
            if self.by_fd.get(fd) is req:
                del self.by_fd[fd]
                self.poll.unregister(fd)
        req.fds = ()

    # -- applying -------------------------------------------------------------------------

    def _apply_ended(self) -> None:
        """Make the emits of the batches that ended, in batch order, and settle them."""
        head = self.head
        flight = self.flight
        while flight and flight[0].emitted is not None:
            req = flight.popleft()
            emitted = req.emitted
            assert emitted is not None
            try:
                self._emit(emitted)
            except Exception as e:  # noqa: BLE001 - an emit's failure is the last routine's call's
                if not self.job.finished:
                    last = self.runners[-1]
                    head.wave_failed(req.call, last, NoItem(), e)
            call = req.call
            with head.lock:
                if not call.settled:
                    call.settled = True
                    n = len(call.taken)
                    queue_: Any = call.taken[0][0]
                    queue_.settle_locked(n, False)
                    head.calls += n
                    head.busy_s += req.busy0
                head.live.discard(call)
                head.busy -= 1
                head.wave_call_ended_locked()
            req.chain.release()

    def _emit(self, items: list[Any]) -> None:
        if not items:
            return
        last = self.runners[-1]
        name = next(iter(last.routine.events))
        direct = last.thread_routes.get(name)
        if direct is not None:
            route, queues = direct
            if route.plain and len(queues) == 1 and queues[0].put_all_from_thread(items):
                if route.output is not None:
                    route.output.extend(items)
                return
        # one by one, an emit waiting for room where a slot is full (the loop's path if
        # hooks see the items): that wait is a safe point for ``pause`` for every call the
        # wave holds, but it parks one call of ``last`` only, so the others are parked here
        # for the time of the emits (``last``'s emitting call stays unparked until it waits)
        self._park_held(1)
        try:
            for item in items:
                emit_from_thread(last, name, item, self.ctx)
        finally:
            self._park_held(-1)

    def _park_held(self, sign: int) -> None:
        """Count every call the wave holds as parked (``sign`` = 1) or not (-1), but one of
        the last routine's: each routine runs a call per request in flight (``_send``), the
        one being applied (popped from ``flight``) included."""
        held = len(self.flight) + 1
        last = self.runners[-1]
        for runner in self.runners:
            k = held - 1 if runner is last else held
            if k:
                runner.park_from_thread(sign * k)

    # -- failures -------------------------------------------------------------------------

    def _died(self, req: _Request) -> None:
        child = req.child
        self._forget(req)
        self.pace.pop(child, None)
        child.process.join(1.0)
        if self.job.finished or self.head.stopping:  # (its kill by the job's end)
            self._abandon()
            return
        j, index = divmod(child.progress.value, STAGE)
        self._fail(
            req, j, index, self._item_died_on(req, j, index), WorkerDiedError(child.death(), index), 0.0
        )

    def _item_died_on(self, req: _Request, j: int, index: int) -> Any:
        """The item of routine ``j`` (a later one) whose call ``req``'s child died in, if it
        came back with the routine before's "done" (``NoItem`` if not: the first routine's
        item is in ``req.call``)."""
        stage, data = req.inputs
        if j == 0 or stage != j or data is None:
            return NoItem()
        try:
            items = pickle.loads(data)  # noqa: S301 - from our child
            return items[index]
        except Exception:  # noqa: BLE001 - it came back but cannot be read here: no dead letter then
            return NoItem()

    def _fail(self, req: _Request, j: int, index: int, item: Any, error: BaseException, dt: float) -> None:
        """A call of routine ``j`` failed in ``req``'s batch: the job fails naming that
        routine, as its policy says (``_chain_stage``; the first routine's item is its dead
        letter, as in ``_give_up``, a later routine's too if it came back); every batch in
        flight is stopped, and its first-routine items stay in flight for the job's end to
        make them dead letters (what the later routines made of them died with them)."""
        head = self.head
        runner = self.runners[j]
        err = error if isinstance(error, Exception) else WorkerDiedError(str(error))
        with runner.lock:
            runner.calls += 1
            runner.failures += 1
            runner.busy_s += dt
        if j == 0:
            with head.lock:
                call = req.call
                one = None
                if not call.settled and index < len(call.taken):
                    one = self._new_call([call.taken.pop(index)])
                    head.live.add(one)
            if one is not None:
                head.wave_failed(one, head, None, err)
        else:
            head.wave_failed(req.call, runner, item, err)
        self._abandon()

    def _drop(self, req: _Request) -> None:
        """End ``req`` without applying it (the job is ending or failing): its child, if it
        still runs the batch, is stopped; its first-routine items stay in flight for the
        job's end to settle (``ThreadRunner._stop``)."""
        head = self.head
        self.flight.remove(req)
        if req.emitted is None:  # still on its child
            child = req.child
            self._forget(req)
            self.pace.pop(child, None)  # (as ``_died``: its speed says nothing of the next child)
            # killed and waited for: a child that still looked alive an instant after its
            # kill went back to the pool as idle, and the engine's next job's request to it
            # failed that job (``WorkerDiedError``, "killed by signal 9")
            child.close()
            self.pool.checkin(child)
            self.on_children -= 1
            with head.lock:
                head.children.discard(child)
        with head.lock:
            head.busy -= 1
            head.wave_call_ended_locked()
        req.chain.release()

    def _abandon(self) -> None:
        """Stop every batch still in flight (the job ends, or a batch failed and the job
        fails): the job's end settles their items."""
        while self.flight:
            self._drop(self.flight[0])
