"""Process waves, the child's side (``process_wave`` has the parent's): run one wave request
through every routine of the chain, waiting for each routine's turn from the parent, and
say when each routine is done (its state, counts and what it handed on).

A child reads its pipe on a thread of its own while a call runs (``reader``), so the
parent's turn messages never wait for a busy child (with the parent waiting to write and
a child waiting to write its own message to the parent, both would wait for ever).

A routine's turn goes from child to child where it can (``Peers``): each child listens on
a Unix socket of its own (an abstract address, with the pool's authentication key and
only for the same user, ``peer_link``), and
once the parent has sent the next batch to a child it tells the child of the batch before
where that is (``NEXT``); that child then sends each routine's turn it finishes straight
to the next one (``PEER``) and says so in its "done", so the parent does not pass it on.
A turn finished before the child knew where the next batch is, or that could not be
sent, goes through the parent as before. The parent's thread shares the GIL with the
engine's loop and the other routines' workers, so a turn passed by it waited for it
(hundreds of microseconds on a busy parent) while the next child had nothing to do.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import queue
import threading
import time
from multiprocessing import connection
from time import thread_time
from typing import TYPE_CHECKING, Any

from ..errors import RemoteError
from .peer_link import dial, serve
from .process import STAGE, ChildContext, NoItem, _portable

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

#: a request's first element when it is a wave's, and a routine's turn passed to one
WAVE = "wave"
TURN = "turn"
#: ``(NEXT, token, next_token, address)``: the batch after the one of ``token`` is on the
#: child listening at ``address``, as the request of ``next_token``; ``(PEER, token, stage,
#: state)``: a routine's turn, sent by the child of the batch before to the request of ``token``
NEXT = "next"
PEER = "peer"
# -- in the child ---------------------------------------------------------------------------


def reader(conn: connection.Connection) -> queue.SimpleQueue[bytes | None]:
    """Read ``conn`` on a thread of its own into a queue (``None`` once the parent is gone)."""
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                inbox.put(None)
                return
            inbox.put(data)

    threading.Thread(target=read, name="weirflow-child-reader", daemon=True).start()
    return inbox


def listen(address: str | None, authkey: bytes, inbox: queue.SimpleQueue[bytes | None]) -> None:
    """Accept the other children's connections at ``address`` (``None``: turns come from the
    parent only) and read each into ``inbox`` (on threads of their own, as ``reader``);
    ``peer_link`` checks who connects."""
    if address is None:
        return

    def read(conn: connection.Connection) -> None:
        with conn, contextlib.suppress(EOFError, OSError):
            while True:
                inbox.put(conn.recv_bytes())

    serve(address, authkey, read)  # (False, no such address here: the parent passes every turn)


#: connections a child keeps to the others, at most (the oldest closed first)
_MAX_PEERS = 16


class Peers:
    """This child's connections to the other children (``listen``), made once per address."""

    def __init__(self, authkey: bytes) -> None:
        self.authkey = authkey
        self.conns: dict[str, connection.Connection] = {}

    def send(self, address: str, data: bytes) -> bool:
        """Send ``data`` to the child at ``address``; whether it went (``False``: that child
        is gone, or not listening yet, and the parent passes the turn)."""
        conn = self.conns.get(address)
        try:
            if conn is None:
                while len(self.conns) >= _MAX_PEERS:  # (children replaced since: gone)
                    with contextlib.suppress(OSError):
                        self.conns.pop(next(iter(self.conns))).close()
                conn = self.conns[address] = dial(address, self.authkey)
            conn.send_bytes(data)
        except (OSError, EOFError, multiprocessing.AuthenticationError):
            dropped = self.conns.pop(address, None)
            if dropped is not None:
                with contextlib.suppress(OSError):
                    dropped.close()
            return False
        return True


class Early:
    """What a child read between its wave requests: the turns sent to a request (``PEER``)
    before that request came, by its token (those of earlier requests are dropped when a
    request starts)."""

    def __init__(self) -> None:
        self.turns: dict[int, dict[int, bytes]] = {}

    def keep(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == PEER:
            self.turns.setdefault(msg[1], {})[msg[2]] = msg[3]

    def take(self, token: int) -> dict[int, bytes]:
        mine = self.turns.pop(token, {})
        self.turns.clear()
        return mine


class _Turns:
    """The turns a wave request has (by routine), and where the next batch is (``NEXT``)."""

    def __init__(self, token: int, granted: tuple[bytes, ...], early: dict[int, bytes]) -> None:
        self.token = token
        self.have = dict(enumerate(granted))
        self.have.update(early)
        self.next: tuple[int, str] | None = None  # (its token, its child's address)

    def read(self, data: bytes) -> None:
        msg = pickle.loads(data)  # noqa: S301 - from our parent, or a child of its pool
        kind = msg[0]
        if kind == TURN:  # (from the parent: for this request)
            self.have[msg[1]] = msg[2]
        elif kind == PEER:
            if msg[1] == self.token:
                self.have[msg[2]] = msg[3]
        elif kind == NEXT and msg[1] == self.token:
            self.next = (msg[2], msg[3])

    def drain(self, inbox: queue.SimpleQueue[bytes | None]) -> bool:
        """Read what came without waiting; ``False`` if the parent is gone."""
        while True:
            try:
                data = inbox.get_nowait()
            except queue.Empty:
                return True
            if data is None:
                return False
            self.read(data)


def run_wave(
    conn: connection.Connection,
    inbox: queue.SimpleQueue[bytes | None],
    progress: Synchronized[int],
    routines: dict[str, Any],
    request: tuple[Any, ...],
    peers: Peers,
    early: Early,
) -> bool:
    """Run one wave request in a child (see the module); ``False`` if the parent is gone.

    It sends, per routine but the last, ``("done", stage, state, calls, busy_s, cpu_s,
    next_items, passed)`` (the items it emitted, pickled, or ``None``: ``_items_back``;
    whether it sent the routine's turn to the next batch's child itself), then ``("end",
    stage, state, calls, busy_s, cpu_s, emitted, passed)`` for the last (its emits' items,
    in order, pickled), or at the first failure ``("fail", stage, index, item, error, busy_s)`` and
    nothing more (the job fails)."""
    _, job_id, stages, items_data, granted, token = request
    turns = _Turns(token, granted, early.take(token))
    try:
        fns = []
        for key, blob, method, wants_ctx, name, events in stages:
            if key not in routines:
                routines[key] = pickle.loads(blob)  # noqa: S301 - from our parent
            fns.append((getattr(routines[key], method), wants_ctx, name, events))
        items: list[Any] = pickle.loads(items_data)  # noqa: S301 - from our parent
    except Exception as e:  # noqa: BLE001 - the first call's failure
        conn.send_bytes(pickle.dumps(("fail", 0, 0, NoItem(), _portable(e), 0.0)))
        return True
    last = len(fns) - 1
    for j, (fn, wants_ctx, name, events) in enumerate(fns):
        while j not in turns.have:  # the request before has not finished this routine yet
            data = inbox.get()
            if data is None:
                return False
            turns.read(data)
        state = pickle.loads(turns.have[j])  # noqa: S301 - from our parent, or the child before
        ctx = ChildContext(job_id, name, events, state)
        out: list[tuple[str, Any]] = []
        ctx.emitted = out
        c0, w0 = thread_time(), time.perf_counter()
        base = STAGE * j
        for i, item in enumerate(items):
            progress.value = base + i
            try:
                if wants_ctx:
                    fn(item, ctx)
                else:
                    fn(item)
            except Exception as e:  # noqa: BLE001 - the parent fails the job, naming the routine
                _send_failure(conn, j, i, item, _portable(e), time.perf_counter() - w0)
                return True
        busy, cpu = time.perf_counter() - w0, thread_time() - c0
        calls = len(items)
        items = [item for _, item in out]
        try:
            left = pickle.dumps(ctx.state, protocol=pickle.HIGHEST_PROTOCOL)
            # (what goes back is pickled before the turn goes on: a batch that fails here
            # passes no turn)
            back = _items_back(items) if j < last else pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - its state or its emits cannot travel back
            what = "the routine's state" if j < last else "what the handler emitted"
            text = f"cannot send {what} back from its process: {type(e).__name__}: {e}"
            _send_failure(conn, j, max(0, calls - 1), NoItem(), RemoteError(text), busy)
            return True
        if not turns.drain(inbox):
            return False
        passed = turns.next is not None and peers.send(
            turns.next[1], pickle.dumps((PEER, turns.next[0], j, left), protocol=pickle.HIGHEST_PROTOCOL)
        )
        ended = "done" if j < last else "end"
        conn.send_bytes(
            pickle.dumps((ended, j, left, calls, busy, cpu, back, passed), protocol=pickle.HIGHEST_PROTOCOL)
        )
    return True


def _items_back(items: list[Any]) -> bytes | None:
    """The next routine's items, pickled for the parent to keep (unpickled only if this
    child dies in that routine's calls: the item it died on is then that routine's dead
    letter); ``None`` if they cannot travel (they need not: they stay in this child)."""
    try:
        return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - whatever pickle raised: no dead letter of its own then
        return None


def _send_failure(
    conn: connection.Connection, stage: int, index: int, item: Any, error: BaseException, dt: float
) -> None:
    try:
        data = pickle.dumps(("fail", stage, index, item, error, dt))
    except Exception:  # noqa: BLE001 - the item it failed on cannot travel
        data = pickle.dumps(("fail", stage, index, NoItem(), error, dt))
    conn.send_bytes(data)
