"""Property examples that end: a hang is a failing example, not a stuck run.

``asyncio.run`` waits without limit, twice: for the main coroutine, and, after it,
for every task it cancels at the end. One example whose job (or engine close) hangs
then stops a whole CI run. ``run_bounded`` runs an example on a fresh loop, gives it
(its engine's close included) ``limit_s``, and if it has not ended by then cancels it,
gives what is left a short grace, and fails with the stack of every task still
pending — hypothesis then reports (and shrinks to) the example that hung.

pytest-timeout's default ``signal`` method does not stop a hypothesis test: the
``Failed`` it raises is caught by hypothesis as an example's failure (it is one of
``failure_exceptions_to_catch``) and shrinking goes on, with no timer any more.
``TIMEOUT`` is the mark for property tests: the ``thread`` method, which dumps every
thread's stack and ends the process, with room for hypothesis' own shrink limit
(300 s, with examples bounded here).
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

#: an example's time limit, engine close included (they take milliseconds; CI is loaded);
#: below the examples' own ``job.wait`` timeouts, so that a hung job is seen as it hung
EXAMPLE_LIMIT_S = 20.0
#: how long tasks left after a cancel get to end before the loop is closed anyway
GRACE_S = 2.0
#: the whole test: generation, and shrinking (hypothesis stops it after 300 s)
TIMEOUT = pytest.mark.timeout(900, method="thread")


def examples(n: int) -> int:
    """``n`` examples, times ``WEIRFLOW_PROPERTY_SCALE`` (e.g. 20 for a stress run)."""
    return n * int(os.environ.get("WEIRFLOW_PROPERTY_SCALE", "1"))


def _stacks(tasks: set[asyncio.Task[Any]]) -> str:
    out = io.StringIO()
    for task in tasks:
        out.write(f"--- task {task.get_name()}: {task.get_coro()!r}\n")
        task.print_stack(file=out)
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident != threading.get_ident():
            out.write(f"--- thread {names.get(ident, ident)}\n")
            out.write("".join(traceback.format_stack(frame)))
    return out.getvalue()


def run_bounded(
    main: Callable[[], Coroutine[Any, Any, None]], what: object, *, limit_s: float = EXAMPLE_LIMIT_S
) -> None:
    """Run ``main()`` on a new loop; ``AssertionError`` naming ``what`` (the example) with
    the stacks of the tasks and threads still running if it has not ended within
    ``limit_s``; never waits more than ``GRACE_S`` after."""
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(main(), name="example")
        done, _ = loop.run_until_complete(asyncio.wait({task}, timeout=limit_s))
        if not done:
            stacks = _stacks({t for t in asyncio.all_tasks(loop) if not t.done()})
            task.cancel()
            loop.run_until_complete(asyncio.wait({task}, timeout=GRACE_S))
            raise AssertionError(f"{what!r} did not end within {limit_s} s; still running:\n{stacks}")
        task.result()
    finally:
        left = {t for t in asyncio.all_tasks(loop) if not t.done()}
        for t in left:
            t.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=GRACE_S))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
