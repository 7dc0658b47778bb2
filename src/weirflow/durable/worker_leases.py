"""Leases of a ``Worker``'s jobs: the heartbeat that renews them (independent of job
code), the watch that stops a job here once its lease could have run out in the store,
and their release, which gives jobs back at once after committing what the next worker
resumes from."""

from __future__ import annotations

import asyncio
import contextlib

from ..errors import StoreError
from .worker_core import LEASE_MARGIN_MAX_S, RECONNECT_MIN_S, WorkerCore, log

__all__ = ["LEASE_MARGIN_MAX_S", "Leases"]


class Leases(WorkerCore):
    async def _heartbeat(self) -> None:
        delay = self.heartbeat_s
        while True:
            await asyncio.sleep(delay)
            held = self._held()
            if not held:
                continue
            sent = self._monotonic()  # (a renewed lease runs from no earlier than this)
            try:
                kept = set(await self.store.renew(self.worker_id, held, self.lease_s))
            except StoreError as e:
                # try again soon: the lease must be renewed as soon as the store is back
                delay = min(self.heartbeat_s, RECONNECT_MIN_S)
                log.warning("heartbeat_failed", worker=self.worker_id, error=str(e), retry_in_s=delay)
                continue
            delay = self.heartbeat_s
            lease_from = self._lease_from
            for job_id in kept:
                if job_id in lease_from:
                    lease_from[job_id] = sent
            tokens = self._tokens
            for job_id, token in held.items():
                # cancelled in the store, or taken over: stop it here (unless this worker
                # claimed it again meanwhile: the refusal was for the earlier run's token)
                if job_id not in kept and tokens.get(job_id) == token:
                    self._lease_lost(job_id, "its lease was not renewed")

    async def _lease_watch(self) -> None:
        """Stop a job still running here once its lease could have run out in the store:
        no renewal confirmed within ``lease_s`` (less ``lease_margin_s``) of when the
        request that granted it was sent. From then on another worker may take the job
        over, and two attempts of a job must never run at once; the store cannot tell a
        worker cut off from it (an outage, a partition, a renewal stuck in a pool that is
        reconnecting) from a dead one, so this worker must notice by itself, not only when
        the store answers. A job that has finished and only waits for its outcome to be
        written is not stopped: that write is fenced, and refused if the job was taken."""
        span = self.lease_s - self.lease_margin_s()
        changed = self._leases_changed
        while True:
            changed.clear()
            now = self._monotonic()
            earliest: float | None = None
            for job_id, sent in list(self._lease_from.items()):
                if job_id in self._lost or job_id not in self.running:
                    continue
                job = self.running[job_id]
                if job is not None and job.finished:
                    continue
                if sent + span <= now:
                    why = f"no renewal of its {self.lease_s:g}s lease reached the store in time"
                    self._lease_lost(job_id, why)
                elif earliest is None or sent < earliest:
                    earliest = sent
            if earliest is None:
                self._lease_watch_idle = True  # (the next claim wakes it)
                try:
                    await changed.wait()
                finally:
                    self._lease_watch_idle = False
            else:
                # a wait for a time: the earliest end of a lease held here (a claim cannot
                # make it earlier: a new lease ends after every lease already held; a claim
                # that waited for this worker's earlier run of its job sets ``changed``)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(earliest + span - now):
                        await changed.wait()

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
