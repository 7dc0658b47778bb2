"""The process executor: ``executor = "process"`` runs a routine's handlers in child
processes, for CPU-bound pure-Python work that one interpreter cannot spread over cores.

The ``Engine`` owns a ``ProcessPool`` of up to ``max_processes`` children (spawn
context). A child holds no job state: each request carries the routine (pickled once
per child), the handler's name, the routine's state and a batch of calls; the reply
carries, per call, what it emitted or the exception it raised, and the state after
the batch. The parent applies the emits (with the usual backpressure, so a full slot
holds the producer back before its next batch), settles the items and replaces the
state: the accounting never leaves the parent.

``concurrent.futures.ProcessPoolExecutor`` is not used: when one of its workers dies
the whole pool breaks and every call in flight fails, where here a child killed in
the middle of a call is one failed attempt of that call (the child reports the index
of the call it is in through shared memory), calls done before it in its batch run
again (their results died with it), and a new child takes its place.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import signal
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from multiprocessing import connection
from time import thread_time
from typing import TYPE_CHECKING, Any

from ..errors import RemoteError, WeirflowError, WorkerDiedError

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    from ..flow.routine import Event, Routine

#: calls sent to a child in one request, at most
MAX_BATCH = 64
#: ``progress`` of a child: the index of the call it is in, plus this times the stage of a
#: process chain (0: the request's own routine; see ``process_chain.Chain``)
STAGE = 65536

#: what a request's results are: per call, whether it succeeded, what it emitted, its
#: error, its duration
Results = list[tuple[bool, list[tuple[str, Any]], BaseException | None, float]]


class ChildContext:
    """What a handler in a child process sees as ``ctx``: emits are collected and applied
    by the parent when the batch comes back; ``state`` is the routine's state."""

    __slots__ = ("_events", "attempt", "emitted", "job_id", "routine", "state")

    def __init__(self, job_id: str, routine: str, events: frozenset[str], state: dict[str, Any]) -> None:
        self.job_id = job_id
        self.routine = routine
        self._events = events
        self.state = state
        self.attempt = 1
        self.emitted: list[tuple[str, Any]] = []

    def emit(self, event: Event | str, item: Any) -> None:
        name = event if isinstance(event, str) else event.name
        if name not in self._events:
            known = ", ".join(sorted(self._events)) or "none"
            raise WeirflowError(f"routine {self.routine!r} has no event {name!r} (events: {known})")
        self.emitted.append((name, item))

    def progress(self, percent: float, message: str = "") -> None:
        """Accepted for compatibility; progress of a call in a child is not reported."""


def _portable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    except Exception:  # noqa: BLE001 - any failure to round-trip means: send its text
        return RemoteError(f"{type(error).__name__}: {error}")
    return error


def _exit_with_parent() -> None:
    """End this child as soon as its parent process dies, even in the middle of a call.

    The pipe's end is seen only between calls, so a handler still running after its
    parent was killed (a worker ``kill -9``-ed) would run on while a new worker retries
    the same step. A thread waits on the parent's sentinel (multiprocessing's, readable
    once the parent is gone: no polling) and ends the process at once."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGKILL)  # at once: no cleanup of a call's half-done work

    threading.Thread(target=watch, name="weirflow-parent-watch", daemon=True).start()


class NoItem:
    """In the failure of a later stage's call (``process_chain.Chain``): the item it was
    called with did not come back (it cannot be pickled, or it died with the child)."""


class _StageError(Exception):
    """A call of a later stage of a process chain raised (``_run_stages``)."""

    def __init__(self, stage: int, item: Any, error: BaseException, dt: float) -> None:
        self.stage, self.item, self.error, self.dt = stage, item, error, dt


def _run_stages(
    stages: list[tuple[Any, bool, ChildContext]],
    emitted: list[tuple[str, Any]],
    stats: list[list[float]],
    progress: Synchronized[int],
    i: int,
) -> list[tuple[str, Any]]:
    """Run what one call of the request's routine emitted through the later stages of its
    process chain (each stage's calls in the order the items came, as the slots between
    them would have served them); what the last stage emitted. A failure stops it."""
    items = emitted
    for j, (fn, wants_ctx, ctx) in enumerate(stages, start=1):
        progress.value = i + STAGE * j
        out: list[tuple[str, Any]] = []
        for _, item in items:
            ctx.emitted = out
            t0 = time.perf_counter()
            try:
                if wants_ctx:
                    fn(item, ctx)
                else:
                    fn(item)
            except Exception as e:  # noqa: BLE001 - the parent's error policy decides
                raise _StageError(j, item, _portable(e), time.perf_counter() - t0) from None
            counts = stats[j - 1]
            counts[0] += 1
            counts[1] += time.perf_counter() - t0
        items = out
    return items


def child_main(
    conn: connection.Connection, progress: Synchronized[int], address: str | None = None, authkey: bytes = b""
) -> None:
    """A child's loop: run each batch it is sent, reply with the results.

    A request may name a process chain (``process_chain.Chain``): routines whose calls
    run here, one after the other, on what the request's routine emits. The reply then
    also carries, per later stage, its calls and busy time and its state, and the first
    call of a later stage that failed (its stage, item and error): the calls up to the
    one whose subtree failed are complete; what that subtree emitted is dropped."""
    from .process_wave_child import NEXT, PEER, TURN, WAVE, Early, Peers, listen, reader, run_wave

    _exit_with_parent()
    routines: dict[str, Any] = {}
    inbox = reader(conn)
    listen(address, authkey, inbox)  # (turns from the other children: ``process_wave_child``)
    peers, early = Peers(authkey), Early()
    while True:
        data = inbox.get()
        if data is None:  # the parent is gone
            return
        request = pickle.loads(data)  # noqa: S301 - from our parent, or a child of its pool
        if request[0] == WAVE:
            if not run_wave(conn, inbox, progress, routines, request, peers, early):
                return
            continue
        if request[0] in (TURN, NEXT, PEER):  # for a wave request that ended here, or the next one
            early.keep(request)
            continue
        key, blob, method, wants_ctx, job_id, name, events, state, calls_data, chain = request
        calls = pickle.loads(calls_data)  # noqa: S301 - from our parent
        results: Results = []
        ctx = ChildContext(job_id, name, events, state)
        stages: list[tuple[Any, bool, ChildContext]] = []
        try:
            if key not in routines:
                routines[key] = pickle.loads(blob)  # noqa: S301 - from our parent
            fn = getattr(routines[key], method)
            for k, b, m, w, n, ev, st in chain:
                if k not in routines:
                    routines[k] = pickle.loads(b)  # noqa: S301 - from our parent
                stages.append((getattr(routines[k], m), w, ChildContext(job_id, n, ev, st)))
        except Exception as e:  # noqa: BLE001 - reported as the first call's failure
            results.append((False, [], _portable(e), 0.0))
            calls = []
        stats: list[list[float]] = [[0, 0.0, 0.0] for _ in stages]  # calls, busy, CPU
        busy = 0.0  # the request's own routine's calls, wall clock
        c0, w0 = thread_time(), time.perf_counter()
        marks: list[list[list[float]]] = []  # the later stages' counts after each call
        failed: tuple[int, Any, BaseException, float] | None = None
        for i, (attempt, args) in enumerate(calls):
            progress.value = i
            ctx.attempt = attempt
            emitted: list[tuple[str, Any]] = []
            ctx.emitted = emitted
            t0 = time.perf_counter()
            try:
                if wants_ctx:
                    fn(*args, ctx)
                else:
                    fn(*args)
            except Exception as e:  # noqa: BLE001 - the parent's error policy decides
                results.append((False, [], _portable(e), time.perf_counter() - t0))
                break
            dt = time.perf_counter() - t0
            busy += dt
            if stages:
                try:
                    emitted = _run_stages(stages, emitted, stats, progress, i)
                except _StageError as f:
                    failed = (f.stage, f.item, f.error, f.dt)
                    results.append((True, [], None, dt))
                    break
                finally:
                    marks.append([c[:] for c in stats])
            results.append((True, emitted, None, dt))
        # CPU time per routine (``process_chain.cut``), from the wall-clock times: a
        # thread-CPU clock read per call costs a system call each, so the request's whole
        # CPU time is shared out in proportion (time the child was not running is spread
        # over the calls alike)
        share = (thread_time() - c0) / max(time.perf_counter() - w0, 1e-9)
        cpu = busy * share
        for counts in stats:
            counts[2] = counts[1] * share
        later = (stats, [c.state for _, _, c in stages], failed) if chain else None
        try:
            out = pickle.dumps((results, ctx.state, later, cpu), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - find the call whose emits cannot travel
            if later is None:
                kept, left = _salvage(results, ctx.state)
            else:
                kept, left, later = _salvage_chain(results, ctx.state, later, marks, len(stages))
            out = pickle.dumps((kept, left, later, cpu))
        conn.send_bytes(out)


def _salvage_chain(
    results: Results, state: dict[str, Any], later: tuple[Any, Any, Any], marks: list[Any], n_stages: int
) -> tuple[Results, dict[str, Any] | None, tuple[Any, Any, Any]]:
    """``_salvage`` for a request with a process chain: what the chain's last stage emitted
    for a call cannot travel, so that stage's call failed (the reply's failure; the
    results and the stages' counts end with that call); or what cannot travel is a state,
    or the item of the failure: sent as ``None`` (not applied) and ``NoItem``."""
    stats, states, failed = later
    kept: Results = []
    for k, (ok, emitted, error, dt) in enumerate(results):
        try:
            pickle.dumps(emitted)
        except Exception as e:  # noqa: BLE001
            text = f"cannot send what the handler emitted back from its process: {type(e).__name__}: {e}"
            kept.append((True, [], None, dt))
            stats, failed = marks[k], (n_stages, NoItem(), RemoteError(text), 0.0)
            break
        kept.append((ok, emitted, error, dt))
    try:
        pickle.dumps(states)
    except Exception:  # noqa: BLE001
        states = [None] * len(states)
    if failed is not None:
        try:
            pickle.dumps(failed)
        except Exception:  # noqa: BLE001 - the item that failed cannot travel
            failed = (failed[0], NoItem(), _portable(failed[2]), failed[3])
    try:
        pickle.dumps(state)
    except Exception:  # noqa: BLE001
        return kept, None, (stats, states, failed)
    return kept, state, (stats, states, failed)


def _salvage(
    results: list[tuple[bool, list[tuple[str, Any]], BaseException | None, float]], state: dict[str, Any]
) -> tuple[list[Any], dict[str, Any] | None]:
    """The results up to the first call whose emits cannot be pickled, which becomes a
    failure saying so (and the state, if it can travel)."""
    kept: list[Any] = []
    for ok, emitted, error, dt in results:
        try:
            pickle.dumps(emitted)
        except Exception as e:  # noqa: BLE001
            text = f"cannot send what the handler emitted back from its process: {type(e).__name__}: {e}"
            kept.append((False, [], RemoteError(text), dt))
            break
        kept.append((ok, emitted, error, dt))
    try:
        pickle.dumps(state)
    except Exception:  # noqa: BLE001
        return kept, None
    return kept, state


class _Child:
    """One child process and the pipe to it."""

    def __init__(self, ctx: Any, authkey: bytes = b"") -> None:
        self.conn, child_conn = ctx.Pipe()
        self.progress = ctx.Value("i", 0, lock=False)
        # where it listens for the other children (a wave's turns; Linux's abstract socket
        # names: nothing in the file system to clean up)
        self.address = f"\0weirflow-{uuid.uuid4().hex}" if authkey and sys.platform == "linux" else None
        self.process = ctx.Process(
            target=child_main,
            args=(child_conn, self.progress, self.address, authkey),
            name="weirflow-process",
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        self.known: set[str] = set()  # routines this child has unpickled
        # the reply or the child's end, whichever comes first: one poll object for the
        # child's life (``connection.wait`` builds a selector and registers both at each call)
        self._poll = select.poll()
        self._poll.register(self.conn.fileno(), select.POLLIN)
        self._poll.register(self.process.sentinel, select.POLLIN)
        self._closing = threading.Lock()
        self._closed = False

    def call(self, data: bytes) -> Any:
        """Send one request and wait for its reply; ``WorkerDiedError`` if the child dies."""
        try:
            self.conn.send_bytes(data)
        except OSError:
            self.process.join(1.0)
            raise WorkerDiedError(self._death(), self.progress.value) from None
        self._poll.poll()
        if self.conn.poll():
            try:
                return pickle.loads(self.conn.recv_bytes())  # noqa: S301 - from our child
            except (EOFError, OSError):
                pass
        self.process.join(1.0)
        raise WorkerDiedError(self._death(), self.progress.value)

    def death(self) -> str:
        """How the child died (for ``WorkerDiedError``)."""
        return self._death()

    def _death(self) -> str:
        code = self.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"the worker process (pid {self.process.pid}) died during the call ({how})"

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def close(self) -> None:
        """Kill the child and close the pipe, once: a pool's ``close`` (a worker's shutdown)
        and the thread whose call the kill ended (its ``checkin``) both close the child, and
        a second ``conn.close()`` would close a descriptor number that may be reused by then."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        self.kill()
        self.process.join(1.0)
        self.conn.close()


class ProcessPool:
    """Up to ``max_processes`` children (spawn), lent to one batch at a time."""

    def __init__(self, *, max_processes: int | None = None) -> None:
        self.max_processes = max_processes or os.cpu_count() or 1
        self._ctx = multiprocessing.get_context("spawn")
        self._cond = threading.Condition()
        self._idle: list[_Child] = []
        self._all: set[_Child] = set()
        self._closed = False
        self._keys: weakref.WeakKeyDictionary[Routine, tuple[str, bytes]] = weakref.WeakKeyDictionary()
        self._authkey = os.urandom(32)  # what the children show each other (``process_wave_child``)

    def routine_key(self, routine: Routine) -> tuple[str, bytes]:
        """A key for ``routine`` and its pickle, made once (``pickle`` errors propagate)."""
        with self._cond:
            found = self._keys.get(routine)
        if found is None:
            found = (uuid.uuid4().hex, pickle.dumps(routine))
            with self._cond:
                self._keys[routine] = found
        return found

    def checkout(self) -> _Child:
        """A free child (a new one while fewer than ``max_processes`` exist); waits for one."""
        with self._cond:
            while True:
                child = self._take_idle_locked()
                if child is not None:
                    return child
                if len(self._all) < self.max_processes:
                    break
                self._cond.wait()
        child = _Child(self._ctx, self._authkey)  # outside the lock: starting a process takes a while
        with self._cond:
            if self._closed:
                child.close()
                raise WorkerDiedError("the engine's process pool is closed")
            self._all.add(child)
        return child

    def try_checkout(self) -> _Child | None:
        """``checkout`` if a child is free or may be started now; else ``None`` at once."""
        with self._cond:
            child = self._take_idle_locked()
            if child is not None:
                return child
            if len(self._all) >= self.max_processes:
                return None
        return self.checkout()

    def _take_idle_locked(self) -> _Child | None:
        """An idle child that is still alive (the dead ones met are dropped), or ``None``;
        raises ``WorkerDiedError`` once the pool is closed."""
        if self._closed:
            raise WorkerDiedError("the engine's process pool is closed")
        while self._idle:
            child = self._idle.pop()
            if child.alive():
                return child
            self._all.discard(child)
        return None

    def checkin(self, child: _Child) -> None:
        """Give ``child`` back; a dead one is dropped and its place freed for a new one."""
        with self._cond:
            if child.alive() and not self._closed:
                self._idle.append(child)
            else:
                self._all.discard(child)
                child.close()
            self._cond.notify()

    def warm(self, routines: Iterable[Routine] = (), n: int | None = None) -> None:
        """Start children ahead of use (up to ``n``, default ``max_processes``), each with
        ``routines`` unpickled (their modules imported) already. Blocking."""
        children = [self.checkout() for _ in range(min(n or self.max_processes, self.max_processes))]
        try:
            for routine in routines:
                key, blob = self.routine_key(routine)
                method = routine.activations[0].method if routine.activations else "on_end"
                empty = pickle.dumps([])
                for child in children:
                    if key not in child.known:
                        data: tuple[Any, ...] = (key, blob, method, False, "", "", frozenset(), {}, empty, ())
                        child.call(pickle.dumps(data))
                        child.known.add(key)
        finally:
            for child in children:
                self.checkin(child)

    def close(self) -> None:
        """Kill every child (a call still running in one is abandoned)."""
        with self._cond:
            self._closed = True
            children = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        for child in children:
            child.close()
