"""How late this process's event loop was while a timed block ran.

A test that bounds a call by its deadline ("fails within 0.1 s") measures the deadline and
every moment the process was not running: on a loaded 2-core machine a process can wait
hundreds of milliseconds for a core, and a timer that fires late is no fault of the code.
``LoopLag`` runs a ticker task beside the block; each tick's lateness is time the loop could
not run anything (the machine busy, the process descheduled, the test's own code holding
the loop). The bound is then checked on the call's duration less that lateness: what the
code itself waited. A call that waited on the network or ran past its deadline still fails
the check, since the ticker kept ticking on time meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

TICK_S = 0.005


@dataclass
class Lag:
    started: float = 0.0
    ended: float | None = None
    late_s: float = 0.0  # the sum of every tick's lateness: how long the loop could not run
    max_late_s: float = 0.0
    ticks: int = 0

    @property
    def elapsed_s(self) -> float:
        return (time.monotonic() if self.ended is None else self.ended) - self.started

    @property
    def own_s(self) -> float:
        """The block's duration less the time the loop could not run."""
        return max(0.0, self.elapsed_s - self.late_s)


@contextlib.asynccontextmanager
async def loop_lag(*, tick_s: float = TICK_S) -> AsyncIterator[Lag]:
    """``async with loop_lag() as lag: await call()``, then ``lag.own_s`` and ``lag.elapsed_s``."""
    lag = Lag()
    last = time.monotonic()

    def count(now: float) -> None:
        nonlocal last
        late = now - last - tick_s
        if late > 0:
            lag.late_s += late
            lag.max_late_s = max(lag.max_late_s, late)
        last = now

    async def tick() -> None:
        nonlocal last
        last = time.monotonic()
        while True:
            await asyncio.sleep(tick_s)
            count(time.monotonic())
            lag.ticks += 1

    ticker = asyncio.get_running_loop().create_task(tick())
    await asyncio.sleep(0)  # the ticker starts before the timed block
    lag.started = time.monotonic()
    try:
        yield lag
    finally:
        lag.ended = time.monotonic()
        count(lag.ended)  # the lateness of the tick that was due when the block ended
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
