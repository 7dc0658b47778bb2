"""``StepJournal``: one steps row per handler call, with its progress, for display.

This is the *progress* journal: it records what ran — status, times, attempt,
worker, error and the latest ``ctx.progress(pct, message)`` — so users can
follow a job step by step (``weirflow jobs steps ID``). It does not make jobs
resumable; that is the durable journal's work, which may extend this one.

The runtime calls the step methods synchronously on the loop; rows are buffered
and written in batches (``flush_s`` after the first buffered change, and by the
worker before it writes a job's outcome), so a step never waits on the store.
Retries of one call share its row (``attempt`` says which one ran last).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from ..errors import StoreError
from ..runtime.journal import Journal, Step
from .models import StepRecord

if TYPE_CHECKING:
    from ..runtime.job import Job
    from ..runtime.results import JobResult
    from .store import Store

log = structlog.get_logger("weirflow.durable")

DEFAULT_FLUSH_S = 0.2

RowKey = tuple[str, int, str, int]


class StepJournal(Journal):
    """Writes steps rows of the jobs a worker runs to ``store``.

    The worker calls ``begin(job_id, run)`` before it starts a job (``run`` is the
    job's ``runs``), so rows of a re-run job (after a crash or a retry) are kept
    apart from the earlier runs'.
    """

    def __init__(self, store: Store, *, worker_id: str, flush_s: float = DEFAULT_FLUSH_S) -> None:
        self.store = store
        self.worker_id = worker_id
        self.flush_s = flush_s
        self._attempts: dict[str, int] = {}
        self._rows: dict[RowKey, StepRecord] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def begin(self, job_id: str, run: int) -> None:
        self._attempts[job_id] = run

    def _record(self, job: Job, step: Step, status: str) -> None:
        done = status == "completed"
        row = StepRecord(
            job_id=job.id,
            routine=step.routine,
            seq=step.seq,
            status=status,
            attempt=step.attempt,
            run=self._attempts.get(job.id, 1),
            progress=100.0 if done else (step.progress or 0.0),
            message=step.message,
            started_at=step.started_at or None,
            completed_at=step.completed_at,
            error=step.error,
            worker=self.worker_id,
            traceback=step.traceback,
        )
        self._rows[(row.job_id, row.run, row.routine, row.seq)] = row
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    def step_started(self, job: Job, step: Step) -> None:
        self._record(job, step, "running")

    def step_progress(self, job: Job, step: Step) -> None:
        self._record(job, step, "running")

    def step_completed(self, job: Job, step: Step) -> None:
        self._record(job, step, step.status)

    async def job_finished(self, job: Job, result: JobResult) -> None:
        # the rows stay buffered: the worker flushes them with the batch of outcomes it
        # writes next, so a job's steps are in the store before its outcome is
        self._attempts.pop(job.id, None)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_s)
        with contextlib.suppress(StoreError):
            await self.flush()

    async def flush(self) -> None:
        """Write every buffered row now; on ``StoreError`` the rows stay buffered."""
        async with self._lock:
            if not self._rows:
                return
            rows, self._rows = self._rows, {}
            try:
                await self.store.record_steps(list(rows.values()))
            except StoreError as e:
                log.warning("steps_not_recorded", rows=len(rows), error=str(e))
                for key, row in rows.items():
                    self._rows.setdefault(key, row)
                raise

    async def close(self) -> None:
        """Stop the timer and write what is left (best effort)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(StoreError):
            await self.flush()
