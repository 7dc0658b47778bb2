"""Cancels that a library call dropped are raised again.

Python 3.11's ``asyncio.wait_for`` returns the inner result (or raises the inner error)
when a cancel lands just as the inner awaitable completes, dropping the cancel (CPython
gh-86296, fixed in 3.12). redis-py sends every command under ``wait_for`` when a socket
timeout is set, so a cancelled Redis call can return as if nothing happened, and a loop
around it (a worker's sweeper, a registry's follower, a node's heartbeat) goes on for
ever: its task's ``cancel()`` at shutdown is lost. The task still counts the request
(``Task.cancelling()``), which is what these helpers check, written by hand because no
library covers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def cancels_now() -> tuple[asyncio.Task[Any] | None, int]:
    """The current task and the cancel requests it has now (for ``raise_lost_cancel``)."""
    task = asyncio.current_task()
    return task, task.cancelling() if task is not None else 0


def raise_lost_cancel(task: asyncio.Task[Any] | None, cancels: int) -> None:
    """Raise ``CancelledError`` if ``task`` was asked to cancel since it had ``cancels``."""
    if task is not None and task.cancelling() > cancels:
        raise asyncio.CancelledError


@contextmanager
def keeping_cancels() -> Iterator[None]:
    """Around a call that may drop a cancel: if the task was cancelled during the block,
    the block ends with ``CancelledError`` whether it returned or raised something else."""
    task, cancels = cancels_now()
    try:
        yield
    except asyncio.CancelledError:
        raise
    except BaseException:
        raise_lost_cancel(task, cancels)
        raise
    raise_lost_cancel(task, cancels)


async def promptly(call: Awaitable[T]) -> T:
    """``await call``, in a task of its own so that a cancel ends the wait at once.

    ``keeping_cancels`` raises a dropped cancel only once the call is over, which for a
    blocking read (``XREAD BLOCK``) is the end of the block. Here the caller's wait is
    ``asyncio.wait``, which never drops a cancel: the caller ends at once, and the call
    is cancelled too (if it drops that cancel as well, it finishes in the background, its
    result discarded)."""
    inner = asyncio.ensure_future(call)
    try:
        await asyncio.wait([inner])
    except asyncio.CancelledError:
        inner.cancel()
        inner.add_done_callback(_discard)
        raise
    return inner.result()


def _discard(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: not reported as never retrieved
