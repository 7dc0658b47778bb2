"""Process waves, the child's side (``process_wave`` has the parent's): run one wave request
through every routine of the chain, waiting for each routine's turn from the parent, and
say when each routine is done (its state, counts and what it handed on).

A child reads its pipe on a thread of its own while a call runs (``reader``), so the
parent's turn messages never wait for a busy child (with the parent waiting to write and
a child waiting to write its own message to the parent, both would wait for ever).
"""

from __future__ import annotations

import pickle
import queue
import threading
import time
from time import thread_time
from typing import TYPE_CHECKING, Any

from ..errors import RemoteError
from .process import STAGE, ChildContext, NoItem, _portable

if TYPE_CHECKING:
    from multiprocessing import connection
    from multiprocessing.sharedctypes import Synchronized

#: a request's first element when it is a wave's, and a routine's turn passed to one
WAVE = "wave"
TURN = "turn"
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


def run_wave(
    conn: connection.Connection,
    inbox: queue.SimpleQueue[bytes | None],
    progress: Synchronized[int],
    routines: dict[str, Any],
    request: tuple[Any, ...],
) -> bool:
    """Run one wave request in a child (see the module); ``False`` if the parent is gone.

    It sends, per routine but the last, ``("done", stage, state, calls, busy_s, cpu_s,
    next_items)`` (the items it emitted, pickled, or ``None``: ``_items_back``),
    then ``("end", stage, state, calls, busy_s, cpu_s, emitted)`` for the last (its emits'
    items, in order), or at the first failure ``("fail", stage, index, item, error,
    busy_s)`` and nothing more (the job fails)."""
    _, job_id, stages, items_data, granted = request
    turns: list[bytes] = list(granted)
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
        while len(turns) <= j:  # the request before has not finished this routine yet
            data = inbox.get()
            if data is None:
                return False
            turns.append(pickle.loads(data)[2])  # noqa: S301 - ("turn", stage, state)
        state = pickle.loads(turns[j])  # noqa: S301 - from our parent
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
            if j < last:
                msg = pickle.dumps(
                    ("done", j, left, calls, busy, cpu, _items_back(items)), protocol=pickle.HIGHEST_PROTOCOL
                )
            else:
                msg = pickle.dumps(
                    ("end", j, left, calls, busy, cpu, items), protocol=pickle.HIGHEST_PROTOCOL
                )
        except Exception as e:  # noqa: BLE001 - its state or its emits cannot travel back
            what = "the routine's state" if j < last else "what the handler emitted"
            text = f"cannot send {what} back from its process: {type(e).__name__}: {e}"
            _send_failure(conn, j, max(0, calls - 1), NoItem(), RemoteError(text), busy)
            return True
        conn.send_bytes(msg)
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
