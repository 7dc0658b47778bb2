"""Leases of a ``Worker``'s jobs: the heartbeat that renews them (independent of job
code), and their release, which gives jobs back at once after committing what the next
worker resumes from."""

from __future__ import annotations

import asyncio
import contextlib

from ..errors import StoreError
from .worker_core import RECONNECT_MIN_S, WorkerCore, log


class Leases(WorkerCore):
    async def _heartbeat(self) -> None:
        delay = self.heartbeat_s
        while True:
            await asyncio.sleep(delay)
            held = self._held()
            if not held:
                continue
            try:
                kept = set(await self.store.renew(self.worker_id, held, self.lease_s))
            except StoreError as e:
                # try again soon: the lease must be renewed as soon as the store is back
                delay = min(self.heartbeat_s, RECONNECT_MIN_S)
                log.warning("heartbeat_failed", worker=self.worker_id, error=str(e), retry_in_s=delay)
                continue
            delay = self.heartbeat_s
            for job_id in held:
                if job_id not in kept:  # cancelled in the store, or taken over: stop it here
                    self._lease_lost(job_id, "its lease was not renewed")

    async def _give_back(self, tokens: dict[str, int]) -> None:
        """Release the jobs of ``tokens`` (job id: fencing token) at once, after committing
        what the next worker resumes from."""
        if self.journal is not None:
            with contextlib.suppress(StoreError):
                await self.journal.flush()
        if self.durable is not None:
            await self._retrying("release", self.durable.flush)
        leases = {j: t for j, t in tokens.items() if j not in self._lost}
        if leases:
            for job_id in await self._retrying("release", self.store.release, leases, self.worker_id):
                self._lease_lost(job_id, "its release was refused")
            given_back = [j for j in sorted(leases) if j not in self._lost]
            self.released += len(given_back)
            for job_id in given_back:
                self._outcome(job_id, "released")
            log.info("jobs_released", worker=self.worker_id, jobs=sorted(leases))
