"""A ``Worker``'s shutdown: running jobs get the grace period, then the rest are
cancelled and given back (and, with ``exit_after_grace``, the process ends)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from .worker_core import log
from .worker_leases import Leases


class Shutdown(Leases):
    async def _drain(self) -> None:
        """Let running jobs finish for ``shutdown_grace_s``, then cancel and give back the
        rest (and end the process with ``exit_after_grace``: a ``def`` handler's thread
        cannot be stopped, and must not run beside the next worker's attempt)."""
        if self._job_tasks:
            _, pending = await asyncio.wait(set(self._job_tasks), timeout=self.shutdown_grace_s)
            if pending:
                self.cut_short = True
                for job in list(self.running.values()):
                    if job is not None and not job.finished:
                        await job.cancel()
                if self.exit_after_grace:
                    await self._give_back([j for j in self.running if j not in self._lost])
                    self._exit()
                await asyncio.wait(pending)
        while self._reporting or self._done:
            self._reports_idle.clear()
            self._report_wake.set()
            await self._reports_idle.wait()

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
