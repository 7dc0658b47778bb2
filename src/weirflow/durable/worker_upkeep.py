"""A ``Worker``'s upkeep: the sweeper (one per store wins the sweeper lock) with
retention and alerts, and the scheduler that fires its queue's due schedules."""

from __future__ import annotations

import asyncio

from ..errors import StoreError
from .worker_core import RECONNECT_MAX_S, RECONNECT_MIN_S, WorkerCore, log

SCHEDULE_IDLE_S = 60.0  # the longest a scheduler sleeps without a due tick (a safety net)
SCHEDULE_MIN_WAIT_S = 0.02


class Upkeep(WorkerCore):
    async def _sweeper(self) -> None:
        while True:
            try:
                report = await self.store.sweep(
                    self.worker_id,
                    max_stalls=self.max_stalls,
                    retention=self.retention,
                    lock_ttl_s=self.sweep_every_s * 3,
                )
                if report is not None and (report.requeued or report.failed or report.deleted):
                    log.info(
                        "swept",
                        worker=self.worker_id,
                        requeued=report.requeued,
                        failed=report.failed,
                        deleted=report.deleted,
                    )
                if report is not None and self.alerts is not None:
                    await self.alerts.check(self.queue)
            except StoreError as e:
                log.warning("sweep_failed", worker=self.worker_id, error=str(e))
            await asyncio.sleep(self.sweep_every_s)

    async def _scheduler(self) -> None:
        """Fire this queue's due schedules: sleep until the next due tick (or until the
        queue's schedules change), then ask the store, which makes one job per tick however
        many workers ask (``weirflow.durable.schedules``)."""
        delay = RECONNECT_MIN_S
        while True:
            try:
                fired = await self.store.fire_schedules(self.queue)
            except StoreError as e:
                log.warning("schedules_failed", worker=self.worker_id, error=str(e), retry_in_s=delay)
                await asyncio.sleep(delay)  # (a backoff while the store fails)
                delay = min(RECONNECT_MAX_S, delay * 2)
                continue
            delay = RECONNECT_MIN_S
            if fired.jobs:
                log.info("schedules_fired", worker=self.worker_id, queue=self.queue, jobs=fired.jobs)
            wait = SCHEDULE_IDLE_S
            if fired.next_at is not None:
                # (at least a moment: a tick another worker is firing right now still looks due)
                wait = min(wait, max(SCHEDULE_MIN_WAIT_S, fired.next_at - self.store.clock()))
            await self.store.wait_for_schedules(self.queue, wait)
