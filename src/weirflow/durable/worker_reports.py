"""Outcomes of a ``Worker``'s jobs: completions written in batches, failures one by
one, each after the journals are flushed; ``wait_reports`` to wait on them."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import LeaseLostError, StoreRefusedError
from .models import QUEUED, Done, JobRecord, StepRecord
from .worker_core import WorkerCore, log


class Reporting(WorkerCore):
    def _report_failure(
        self,
        job_id: str,
        error: str,
        *,
        retry: bool = True,
        detail: str | None = None,
        dead_letters: list[dict[str, Any]] | None = None,
    ) -> None:
        self._reporting.add(job_id)
        fail = functools.partial(self.store.fail, retry=retry, detail=detail, dead_letters=dead_letters)
        plain = functools.partial(self.store.fail, retry=retry)
        task = asyncio.get_running_loop().create_task(self._fail(job_id, error, fail, plain))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fail(
        self,
        job_id: str,
        error: str,
        fail: Callable[..., Awaitable[JobRecord]],
        plain: Callable[..., Awaitable[JobRecord]],
    ) -> None:
        """Write a failure; ``plain`` (without its detail and dead letters) if the store
        refuses ``fail`` for what it holds, and give the job up (its lease lapses) if it
        refuses that too."""
        try:
            await self._flush_journals()
            if job_id in self._lost:
                return
            token = self._tokens.get(job_id)
            if token is None:
                return
            try:
                try:
                    record = await self._retrying("report", fail, job_id, self.worker_id, token, error)
                except StoreRefusedError as e:
                    log.warning("failure_not_stored", worker=self.worker_id, job=job_id, error=str(e))
                    why = f"{error} (its failure could not be stored as it was: {e})"
                    record = await self._retrying("report", plain, job_id, self.worker_id, token, why)
            except LeaseLostError as e:
                self._lease_lost(job_id, str(e))
                return
            except StoreRefusedError as e:
                log.error("outcome_not_stored", worker=self.worker_id, job=job_id, error=str(e))
                return
        finally:
            self._reported([job_id])
            self._forget(job_id)
        if record.status == QUEUED:  # failed, and queued again for its next attempt
            self.retried += 1
            self._outcome(job_id, "retried")
            log.info(
                "job_retrying",
                worker=self.worker_id,
                job=job_id,
                attempt=record.attempt,
                max_attempts=record.max_attempts,
                retry_in_s=round(max(0.0, record.run_at - self.store.clock()), 3),
                error=error,
            )
            return
        self.failed += 1
        self._outcome(job_id, "failed")
        log.info(
            "job_failed",
            worker=self.worker_id,
            job=job_id,
            attempts=record.attempt,
            status=record.status,
            error=error,
        )

    async def _reporter(self) -> None:
        """Write completions in batches: whatever finished while the last batch was written."""
        while True:
            await self._report_wake.wait()
            self._report_wake.clear()
            while self._done:
                batch, self._done = self._done, []
                refused, failed, held = await self._report_batch(batch)
                for job_id in refused:
                    self._lease_lost(job_id, "its outcome was refused")
                self.completed += len(held) - len(refused) - len(failed)
                self.failed += len(failed)
                for job_id, *_ in held:
                    if job_id in failed:
                        self._outcome(job_id, "failed")
                    elif job_id not in refused:
                        self._outcome(job_id, "completed")
                self._reported([d[0] for d in batch])
                for d in batch:
                    self._forget(d[0])

    async def _report_batch(self, batch: list[Done]) -> tuple[list[str], set[str], list[Done]]:
        """Write the completions of ``batch`` after the durable journal, with the jobs' last
        step rows in the same write (``Store.complete(steps=...)``): the ids refused, those
        failed instead, and the completions written (``batch`` but the jobs lost). A batch
        the store refuses with its rows goes the long way: the rows flushed (those it
        cannot hold dropped, with a log), then the completions."""
        journal = self.journal
        if journal is None:
            await self._flush_journals()
            held = [d for d in batch if d[0] not in self._lost]
            return *(await self._complete(held)), held
        await self._flush_durable()
        held = [d for d in batch if d[0] not in self._lost]
        if not held:
            return [], set(), held

        async def write(rows: list[StepRecord]) -> list[str]:
            return await self._retrying("report", self.store.complete, self.worker_id, held, rows)

        try:
            return await journal.with_finished({d[0]: d[1] for d in held}, write), set(), held
        except StoreRefusedError as e:
            log.warning("outcomes_with_steps_refused", worker=self.worker_id, jobs=len(held), error=str(e))
        await self._flush_journals()
        held = [d for d in held if d[0] not in self._lost]
        return *(await self._complete(held)), held

    async def _flush_durable(self) -> None:
        if self.durable is not None:  # a retry resumes from what the journal holds
            try:
                await self._retrying("report", self.durable.flush)
            except StoreRefusedError as e:  # (the journal drops what was refused)
                log.warning("journal_not_stored", worker=self.worker_id, error=str(e))

    async def _flush_journals(self) -> None:
        """Write the step rows and the journal (what a job's outcome must come after)."""
        if self.journal is not None:
            await self._retrying("report", self.journal.flush)
        if self.durable is not None:  # a retry resumes from what the journal holds
            try:
                await self._retrying("report", self.durable.flush)
            except StoreRefusedError as e:  # (the journal drops what was refused)
                log.warning("journal_not_stored", worker=self.worker_id, error=str(e))

    async def _complete(self, held: list[Done]) -> tuple[list[str], set[str]]:
        """Write the completions ``held``: the ids refused (not this worker's any more) and
        those failed instead. A batch the store refuses for what it holds is written job
        by job, and a job whose outcome it refuses fails with the reason (or, refused
        too, is given up: its lease lapses), so one such job never holds up the others."""
        try:
            return await self._retrying("report", self.store.complete, self.worker_id, held), set()
        except StoreRefusedError as e:
            if len(held) > 1:
                refused: list[str] = []
                failed: set[str] = set()
                for done in held:
                    one_refused, one_failed = await self._complete([done])
                    refused += one_refused
                    failed |= one_failed
                return refused, failed
            job_id, token = held[0][0], held[0][1]
            log.warning("outcome_not_stored", worker=self.worker_id, job=job_id, error=str(e))
            fail = functools.partial(self.store.fail, retry=False)
            try:
                await self._retrying(
                    "report", fail, job_id, self.worker_id, token, f"its outcome cannot be stored: {e}"
                )
            except LeaseLostError:
                return [job_id], set()
            except StoreRefusedError as again:
                log.error("outcome_not_stored", worker=self.worker_id, job=job_id, error=str(again))
                return [job_id], set()
            return [], {job_id}

    def _reported(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._reporting.discard(job_id)
            self._lost.discard(job_id)
        if not self._reporting and not self._done:
            self._reports_idle.set()
        self.reports += 1
        task = asyncio.get_running_loop().create_task(self._notify_reports())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify_reports(self) -> None:
        async with self._reports_changed:
            self._reports_changed.notify_all()

    async def wait_reports(self, seen: int) -> None:
        """Return once this worker has made more than ``seen`` changes to the store
        (``reports``: claims and outcomes): a way to wait on the store without polling it."""
        async with self._reports_changed:
            await self._reports_changed.wait_for(lambda: self.reports > seen)
