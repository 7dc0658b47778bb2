"""Letting threads in: a busy event loop starves threads of the GIL.

CPython hands the GIL to a waiting thread only once the holder has kept it for a
whole switch interval (5 ms) with no switch in between. An event loop with work
to do releases the GIL at every poll and takes it back within microseconds; that
counts as a switch, so a thread that needs the GIL back (after each SQLite call,
say) waits for as long as the loop stays busy. Measured here: a store read issued
during a 2 s CPU-bound job did not complete until the job had ended, and a worker's
lease heartbeat would wait the same way.

Code that hands short work to such a thread, and will wait for it, counts the call
with ``thread_call()`` (the SQLite store does); the runtime calls
``let_threads_in()`` where long runs of handler calls yield the loop, and while a
counted call is in flight that releases the GIL for ``HANDOFF_S``, long enough for
the waiting thread to wake and take it.

Calls of plain ``def`` handlers are not counted: each item needs the GIL several
times on both sides, so hand-offs every hundred calls cost the busy async routines
up to half their speed and still left the ``def`` routine finishing last (measured
with a 3-routine async chain of 300,000 items beside a ``def`` routine of 2,000:
2.0 s without, 4.0 s with 0.2 ms hand-offs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: how long the loop's thread lets go of the GIL for a thread that waits for it
HANDOFF_S = 0.0002

_in_flight = 0  # one count per process, as the GIL is (event loops may run in several threads)
_count_lock = threading.Lock()


@contextmanager
def thread_call() -> Iterator[None]:
    """Count a call that runs on another thread while this one (the loop's) waits for it."""
    global _in_flight
    with _count_lock:
        _in_flight += 1
    try:
        yield
    finally:
        with _count_lock:
            _in_flight -= 1


def let_threads_in() -> None:
    """Release the GIL for a moment if a counted thread call is in flight."""
    if _in_flight:
        time.sleep(HANDOFF_S)  # not a wait for state: the GIL is let go for this long
