"""``Worker``: claims jobs from a store and runs them in an engine.

A worker holds a lease on each job it runs, renewed by a heartbeat task that is
independent of job code; it reports outcomes (completions in batches); it runs
the sweeper (one per store wins the sweeper lock) with retention and alerts; it
fires its queue's schedules, sleeping until the next due tick (``schedules=False``
leaves that to other workers). At
start it requeues the jobs a previous run with the same ``worker_id`` left
running. ``stop()`` (SIGTERM/SIGINT in ``weirflow worker``) stops claiming, lets
running jobs finish for ``shutdown_grace_s``, then cancels the rest and gives
them back to the queue. A plain ``def`` handler's thread cannot be cancelled:
with ``exit_after_grace`` (``weirflow worker``) the worker then ends the process
right after giving the jobs back, so no straggler runs beside the next attempt.
A store that fails once open (PostgreSQL restarting) is retried with exponential backoff;
nothing is lost meanwhile: outcomes wait in memory and the leases keep the jobs
this worker's. A store that cannot be opened at start raises ``StoreOpenError`` at once.

Fencing: every write for a job carries the token of this worker's claim
(``JobRecord.token``). When the store refuses one (the job was taken over after
this worker's lease expired, or cancelled), the worker logs ``lease_lost``,
stops the job at once and never writes for it again.

Idle workers wait for new jobs with ``store.wait_for_jobs``: PostgreSQL wakes them
by ``LISTEN/NOTIFY``; SQLite and memory wake workers sharing the store object at
once and otherwise after a bounded wait that doubles from ``poll_min_s`` to
``poll_max_s`` while idle (the cross-process wake-up for SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib

from ..errors import StoreError, StoreOpenError
from ..redact import redact_url
from . import engine_journals
from .models import JobRecord
from .worker_core import (
    DEFAULT_CONCURRENCY,
    RECONNECT_MAX_S,
    RECONNECT_MIN_S,
    default_worker_id,
    first_done,
    log,
)
from .worker_jobs import Running
from .worker_shutdown import Shutdown
from .worker_upkeep import Upkeep

__all__ = ["DEFAULT_CONCURRENCY", "Worker", "default_worker_id"]


class Worker(Running, Upkeep, Shutdown):
    """Runs jobs of ``queue`` from ``store`` (a ``Store`` or a URL) with ``flows``
    (an ``Engine`` with registered flows, or the flows themselves).

    ``concurrency`` jobs at once in this worker; ``queue_concurrency`` and ``rate``
    (``"5/1s"``) are enforced by the store over every worker of the queue. Leases
    last ``lease_s`` and are renewed every ``heartbeat_s`` (``lease_s / 3``). Give a
    stable ``worker_id`` to recover this worker's jobs after a crash at once
    (otherwise the sweeper requeues them when their leases expire).
    """

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """``stop()`` was called: no more claims."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop claiming; ``run()`` returns once running jobs are finished or given back."""
        self._stopping.set()

    async def __aenter__(self) -> Worker:
        self._main = asyncio.get_running_loop().create_task(
            self.run(), name=f"weirflow:worker:{self.worker_id}"
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        await self._main

    async def run(self) -> None:
        """Work until ``stop()``."""
        if self._owns_store:
            # not retried: a store that cannot be opened is a setting to fix (``weirflow worker``
            # exits 2); reconnecting is for a store that was open and went away
            try:
                await self.store.open()
            except StoreError as e:
                # the engine's journals as they were: its jobs are not this worker's
                engine_journals.detach(self.engine, self._attached)
                if isinstance(e, StoreOpenError):
                    raise
                raise StoreOpenError(str(e)) from e
        try:
            recovered = await self._retrying("recover", self.store.recover, self.worker_id, self.max_stalls)
            if recovered:
                log.info("jobs_recovered", worker=self.worker_id, jobs=recovered)
            store = redact_url(self.store.url)
            log.info("worker_started", worker=self.worker_id, queue=self.queue, store=store)
            loops = [self._heartbeat(), self._lease_watch(), self._reporter(), self._sweeper()]
            if self.schedules:
                loops.append(self._scheduler())
            for coro in loops:
                task = asyncio.get_running_loop().create_task(coro)
                self._tasks.add(task)
            await self._claim_loop()
            await self._drain()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            if self.journal is not None:
                await self.journal.close()
            if self.durable is not None:
                with contextlib.suppress(Exception):  # the store may be gone: logged by the journal
                    await self.durable.close()
            engine_journals.detach(self.engine, self._attached)
            if self._owns_engine:
                await self.engine.close()
            if self._owns_store:
                await self.store.close()
            log.info(
                "worker_stopped",
                worker=self.worker_id,
                completed=self.completed,
                failed=self.failed,
                retried=self.retried,
                released=self.released,
                lost=self.lost,
            )

    # -- claiming -----------------------------------------------------------------------

    def _hold(self, record: JobRecord, sent: float) -> None:
        """This worker holds ``record``'s job from its claim (sent at ``sent``) on. The
        metrics count the claim's attempt from here: a claim of a job whose earlier run here
        is not over yet (``_run_again``) is held once that run's end was counted, so each
        run's end is counted with its own start (they are kept by job id)."""
        self.running[record.id] = None
        self._tokens[record.id] = record.token
        self._lease_from[record.id] = sent
        if self.metrics is not None:
            self.metrics.claimed(record)

    def _still_here(self, job_id: str) -> bool:
        """An earlier run of ``job_id`` in this worker is not over: running, its outcome
        not yet written, or lost with handler calls of it still running."""
        return self._held_here(job_id) or job_id in self._lingering

    def _held_here(self, job_id: str) -> bool:
        """An earlier run of ``job_id`` still has its task, token or outcome here."""
        return job_id in self.running or job_id in self._reporting or job_id in self._tokens

    async def _run_again(self, record: JobRecord, sent: float) -> None:
        """A claim of a job this worker still runs: its lease ran out here (a clock that
        jumped ahead, renewals that did not get through) and the store gave the job back
        to this worker's own claim, under a new token. The earlier run is over for the
        store: stop it here, as a lost one, and start the new run once nothing of the old
        one is left (its task, its token, its outcome, its handler calls that outlived it),
        so that the two never run at once and nothing of the old run is written under the
        new claim's token. While only the old run's calls are left, the new claim is held
        (its lease renewed) and waits for them."""
        job_id, token = record.id, record.token
        self._lease_lost(job_id, f"this worker claimed it again (run {token}): its lease had run out")
        self._claimed_again[job_id] = token  # (a later claim of it again replaces this one)
        gone = self._gone.setdefault(job_id, asyncio.Event())
        try:
            while self._held_here(job_id) and self._claimed_again.get(job_id) == token:
                gone.clear()
                await gone.wait()
        finally:
            latest = self._claimed_again.get(job_id) == token
            if latest:
                del self._claimed_again[job_id]
                if job_id not in self._lingering:
                    self._gone.pop(job_id, None)
        if not latest:
            return  # claimed again since, under a newer token: that claim runs it
        self._lost.discard(job_id)  # (what the earlier run left: nothing of it runs now)
        # the records it made since are dropped, not written, and a write of them still under
        # way (refused: the earlier run's token) ends before the new run is begun
        for journal in (self.durable, self.journal):
            if journal is not None:
                with contextlib.suppress(StoreError):
                    await journal.flush()
        if self._stopping.is_set():  # shutting down: the claim goes back at once
            with contextlib.suppress(StoreError):
                await self.store.release({job_id: token}, self.worker_id)
            return
        log.info("job_claimed_again", worker=self.worker_id, job=job_id, token=token)
        self._hold(record, sent)
        self._leases_changed.set()  # (its lease is older than the ones the watch waits on)
        if job_id in self._lingering:
            ok = await self._calls_gone(job_id, gone)
            if job_id not in self._claimed_again:
                self._gone.pop(job_id, None)
            if not ok:
                return
        await self._run_job(record)

    async def _calls_gone(self, job_id: str, gone: asyncio.Event) -> bool:
        """Wait, holding the new claim of ``job_id``, until no handler call of an earlier
        run of it runs here; ``False`` if the new claim was lost or given back by the
        shutdown meanwhile (then let go of here)."""
        log.info(
            "job_waits_for_calls", worker=self.worker_id, job=job_id, runs=sorted(self._lingering[job_id])
        )
        while job_id in self._lingering and job_id not in self._lost and not self._released.is_set():
            gone.clear()
            await first_done(gone.wait(), self._released.wait())
        if job_id in self._lingering or job_id in self._lost:
            self._lost.discard(job_id)
            self._reported([])
            self.running.pop(job_id, None)
            self._forget(job_id)
            return False
        return True

    async def _release_unheld(self, claimed_since: float) -> None:
        """Give back the jobs the store says run here that this worker does not hold: a
        claim whose reply was lost took them (their attempt is not counted: they never ran)."""
        # (what ``_still_here`` counts, and a job claimed again here that waits to run)
        held = {*self._tokens, *self.running, *self._reporting, *self._claimed_again}
        given = await self.store.release_unheld(self.worker_id, held, claimed_since=claimed_since)
        if given:
            log.info("unheld_released", worker=self.worker_id, jobs=given)

    async def _claim_loop(self) -> None:
        unsure = await self._claiming()
        if unsure is not None:  # stopping after a failed claim: what it took goes back too, if it can
            with contextlib.suppress(StoreError):
                await self._release_unheld(unsure)

    async def _claiming(self) -> float | None:
        """Claim and start jobs until ``stop()``; if the last claims failed, when (the
        store's clock) the first of them was sent."""
        idle = self.poll_min_s
        delay = RECONNECT_MIN_S
        # a claim failed (sent then, by the store's clock): the jobs it may have taken are
        # not known here
        unsure: float | None = None
        while not self._stopping.is_set():
            slots = (
                self.concurrency if self.node_capacity is None else min(self.concurrency, self.node_capacity)
            )
            free = slots - len(self.running) - len(self._claimed_again)
            if free <= 0:
                self._slot_free.clear()
                await first_done(self._slot_free.wait(), self._stopping.wait())
                continue
            try:
                if unsure is not None:  # the last claim failed: the store may have run it all the same
                    await self._release_unheld(unsure)
                    unsure = None
                claimed_since = self.store.clock()
                sent = self._monotonic()  # (the lease runs from no earlier than this)
                claim = await self.store.claim(
                    self.queue,
                    self.worker_id,
                    limit=free,
                    lease_s=self.lease_s,
                    queue_concurrency=self.queue_concurrency,
                    rate=self.rate,
                    max_stalls=self.max_stalls,
                    node=self.node,
                )
            except StoreError as e:
                # its reply may be what was lost (the store ran it): give back what it took
                unsure = claimed_since if unsure is None else unsure
                log.warning(
                    "store_unavailable", worker=self.worker_id, during="claim", error=str(e), retry_in_s=delay
                )
                await self._sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)
                continue
            delay = RECONNECT_MIN_S
            if claim.jobs:
                self._reported([])
            for record in claim.jobs:
                if self._still_here(record.id):
                    run = self._run_again(record, sent)
                else:
                    self._hold(record, sent)
                    run = self._run_job(record)
                task = asyncio.get_running_loop().create_task(run, name=f"weirflow:run:{record.id}")
                self._job_tasks.add(task)
                task.add_done_callback(self._job_tasks.discard)
            if claim.jobs:
                if self._lease_watch_idle:
                    self._leases_changed.set()
                idle = self.poll_min_s
            if len(claim.jobs) < free:
                wait = idle if claim.wait_s is None else min(max(claim.wait_s, 0.001), self.poll_max_s)
                await first_done(self.store.wait_for_jobs(self.queue, wait), self._stopping.wait())
                if not claim.jobs:
                    idle = min(self.poll_max_s, idle * 2)
        return unsure
