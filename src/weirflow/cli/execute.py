"""Run one job of a flow to completion for the command line."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from typing import Any

from rich.console import Console

from ..errors import JobTimeoutError, WeirflowError
from ..flow.graph import Flow
from ..runtime.engine import Engine
from .progress import show_progress
from .report import report


class RunInterruptedError(WeirflowError):
    """Ctrl-C ended ``run``: the job was cancelled; ``document`` is what it had done."""

    def __init__(self, document: dict[str, Any], summary: str) -> None:
        super().__init__(summary)
        self.document = document
        self.summary = summary


async def run_job(
    flow: Flow,
    inputs: dict[str, list[Any]],
    *,
    timeout_s: float | None,
    console: Console | None,
) -> dict[str, Any]:
    """Run ``flow`` with ``inputs`` and return what the command prints (see ``report``).

    With ``console`` the job's progress is drawn on it while it runs. After
    ``timeout_s`` the job is cancelled (its items dead-lettered as ``job_timeout``) and the report's
    ``error`` says so.
    """
    async with Engine() as engine:
        job = await engine.start(flow, inputs)
        display: AbstractAsyncContextManager[None] = (
            show_progress(job, console) if console is not None else contextlib.nullcontext()
        )
        async with display:
            try:
                result = await job.wait(timeout_s)
            except JobTimeoutError:
                result = await job.cancel(reason="job_timeout", error=f"timed out after {timeout_s:g}s")
                return report(result, error=f"timed out after {timeout_s:g}s; job cancelled")
            except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task
                result = await job.cancel(error="interrupted")
                stats = result.stats
                summary = (
                    f"job cancelled: {stats.accepted} input(s) accepted, {stats.processed_at_entry} "
                    f"processed, {result.dead_letter_count} dead-lettered as job_cancelled"
                )
                raise RunInterruptedError(report(result, error="interrupted"), summary) from None
        return report(result)
