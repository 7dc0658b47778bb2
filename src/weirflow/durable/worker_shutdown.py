"""A ``Worker``'s shutdown: running jobs get the grace period, then the rest are
cancelled, the engine's child processes (``executor = "process"`` handlers) are killed,
and only then are the jobs given back (and, with ``exit_after_grace``, the process ends):
no handler of this worker runs on once another worker may resume its job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from ..runtime.results import JobStatus
from .worker_core import log
from .worker_leases import Leases

#: with ``exit_after_grace``, the longest the outcomes of jobs that ended meanwhile may take
REPORT_WAIT_S = 0.5


class Shutdown(Leases):
    async def _drain(self) -> None:
        """Let running jobs finish for ``shutdown_grace_s``, then cancel and give back the
        rest (and end the process with ``exit_after_grace``: a ``def`` handler's thread
        cannot be stopped, and must not run beside the next worker's attempt)."""
        if self._job_tasks:
            _, pending = await asyncio.wait(set(self._job_tasks), timeout=self.shutdown_grace_s)
            if pending:
                self.cut_short = True
                await self._cut_short()
                if self.exit_after_grace:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(REPORT_WAIT_S):
                            await self._reports_written()
                    self._exit()
                await asyncio.wait(pending)
        await self._reports_written()

    async def _reports_written(self) -> None:
        while self._reporting or self._done:
            self._reports_idle.clear()
            self._report_wake.set()
            await self._reports_idle.wait()

    async def _cut_short(self) -> None:
        """The grace period is over: cancel every job still running (all at once), kill
        the engine's child processes, then release the leases of what was cancelled (and
        of what was claimed and not started yet). This is the only release of a shutdown:
        each job's ``_run_job`` waits for ``_released`` instead of releasing by itself."""
        held = self._held()
        ids = [j for j in self.running if j in held]
        started = [(j, job) for j in ids if (job := self.running[j]) is not None]
        ended = await asyncio.gather(*(job.cancel() for _, job in started))
        finished = {
            j for (j, _), r in zip(started, ended, strict=True) if r.status is not JobStatus.CANCELLED
        }
        self.engine.close_processes()  # a process handler would run on after the release
        try:
            await self._give_back({j: held[j] for j in ids if j not in finished})
        finally:
            self._released.set()

    def _exit(self) -> None:
        """End the process now: the leases are given back, the logs flushed; threads of
        handlers still running die with it."""
        log.warning(
            "worker_exiting",
            worker=self.worker_id,
            grace_s=self.shutdown_grace_s,
            why="the grace period ended with handlers still running",
        )
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)
