"""Waiting on durable state without sleeping: on workers' reports, or (across processes)
by polling the store in a bounded loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from weirflow.durable import JobRecord, StepRecord, Store
from weirflow.durable.worker import Worker


async def until(check: Callable[[], Awaitable[bool]], *workers: Worker, timeout_s: float = 20) -> None:
    """Wait until ``check()`` holds, re-checking each time one of ``workers`` writes an
    outcome to the store."""
    async with asyncio.timeout(timeout_s):
        while True:
            seen = [w.reports for w in workers]
            if await check():
                return
            waits = [asyncio.ensure_future(w.wait_reports(n)) for w, n in zip(workers, seen, strict=True)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in waits:
                    t.cancel()


async def job_is(store: Store, job_id: str, *statuses: str) -> JobRecord | None:
    job = await store.get(job_id)
    return job if job is not None and job.status in statuses else None


async def poll_store(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 30, every_s: float = 0.05
) -> None:
    """Bounded polling of the store, only for state another process writes (crash tests)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(every_s)  # cross-process: nothing in this process to wait on


def step_outcomes(steps: list[StepRecord]) -> list[tuple[str, str, int, str | None]]:
    """``(routine, status, attempt, worker)`` of each step, by routine, after checking that
    no step is running and that each routine (called once in these flows) has one row:
    a rerun is the same step, with the next attempt, not a new row."""
    assert not [s for s in steps if s.status == "running"], steps
    assert sorted((s.routine, s.seq) for s in steps) == sorted({(s.routine, 1) for s in steps}), steps
    return [(s.routine, s.status, s.attempt, s.worker) for s in sorted(steps, key=lambda s: s.routine)]
