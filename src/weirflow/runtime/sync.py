"""``wf.run``: run a flow to completion from synchronous code."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from ..errors import JobTimeoutError
from ..flow.graph import Flow
from .engine import Engine
from .hooks import Hooks
from .results import JobResult


def run(
    flow: Flow,
    inputs: dict[str, Any] | None = None,
    *,
    timeout_s: float | None = None,
    hooks: Iterable[Hooks] = (),
    max_threads: int | None = None,
) -> JobResult:
    """Run one job of ``flow`` with ``inputs`` and return its result.

    On timeout the job is cancelled (its items dead-lettered as ``job_timeout``) and
    ``JobTimeoutError`` is raised. Must not be called from a running event loop.
    """

    async def main() -> JobResult:
        async with Engine(hooks=hooks, max_threads=max_threads) as engine:
            job = await engine.start(flow, inputs)
            try:
                return await job.wait(timeout_s)
            except JobTimeoutError:
                await job.cancel(reason="job_timeout", error=f"timed out after {timeout_s:g}s")
                raise

    return asyncio.run(main())
