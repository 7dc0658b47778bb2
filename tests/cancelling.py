"""Cancelling a call at every point: the check that a loop around the call ends at its
task's cancel (Python 3.11's ``asyncio.wait_for``, which redis-py uses to send every
command, can drop a cancel that lands just as the command is sent: CPython gh-86296)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence


async def cancel_outcomes(calls: Sequence[Callable[[], Awaitable[object]]], *, steps: int) -> Counter[str]:
    """Start each of ``calls`` in a task and cancel it after 0, 1, ... ``steps - 1`` steps of
    the loop: how many ended ``cancelled``, ``finished first`` (done before the cancel), or
    ``went on: <task>`` (the cancel was dropped and the call returned or failed)."""
    outcomes: Counter[str] = Counter()
    for n in range(steps):
        for call in calls:
            task = asyncio.ensure_future(call())
            for _ in range(n):
                await asyncio.sleep(0)
            if task.done():
                outcomes["finished first"] += 1
                continue
            task.cancel()
            await asyncio.wait([task])
            outcomes["cancelled" if task.cancelled() else f"went on: {task!r}"] += 1
    return outcomes
