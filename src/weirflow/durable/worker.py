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
A store that fails (PostgreSQL restarting) is retried with exponential backoff;
nothing is lost meanwhile: outcomes wait in memory and the leases keep the jobs
this worker's.

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
import functools
import json
import logging
import os
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import structlog

from ..errors import JobError, JobTimeoutError, LeaseLostError, StoreError
from ..flow.graph import Flow
from ..runtime.engine import Engine
from ..runtime.job import Job
from ..runtime.journal import Journals
from ..runtime.replay import Restore, restore_from
from ..runtime.results import JobResult, JobStatus, format_traceback
from .alerts import AlertRules, Alerts
from .journal import DurableJournal
from .models import DEFAULT_QUEUE, Done, JobRecord, Rate, Retention
from .steps import StepJournal, reconciled
from .store import DEFAULT_LEASE_S, DEFAULT_MAX_STALLS, Store, open_store

log = structlog.get_logger("weirflow.durable")
T = TypeVar("T")

DEFAULT_CONCURRENCY = 3
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
SCHEDULE_IDLE_S = 60.0  # the longest a scheduler sleeps without a due tick (a safety net)
SCHEDULE_MIN_WAIT_S = 0.02


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs jobs of ``queue`` from ``store`` (a ``Store`` or a URL) with ``flows``
    (an ``Engine`` with registered flows, or the flows themselves).

    ``concurrency`` jobs at once in this worker; ``queue_concurrency`` and ``rate``
    (``"5/1s"``) are enforced by the store over every worker of the queue. Leases
    last ``lease_s`` and are renewed every ``heartbeat_s`` (``lease_s / 3``). Give a
    stable ``worker_id`` to recover this worker's jobs after a crash at once
    (otherwise the sweeper requeues them when their leases expire).
    """

    def __init__(
        self,
        store: Store | str,
        flows: Engine | Iterable[Flow],
        *,
        queue: str = DEFAULT_QUEUE,
        concurrency: int = DEFAULT_CONCURRENCY,
        queue_concurrency: int | None = None,
        rate: Rate | str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        heartbeat_s: float | None = None,
        worker_id: str | None = None,
        max_stalls: int = DEFAULT_MAX_STALLS,
        sweep_every_s: float | None = None,
        retention: Retention | None = None,
        alerts: AlertRules | None = None,
        shutdown_grace_s: float = 30.0,
        poll_min_s: float = 0.05,
        poll_max_s: float = 1.0,
        record_steps: bool = True,
        durable: bool = True,
        schedules: bool = True,
        exit_after_grace: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self._owns_store = isinstance(store, str)
        self.store: Store = open_store(store) if isinstance(store, str) else store
        self._owns_engine = not isinstance(flows, Engine)
        if isinstance(flows, Engine):
            self.engine = flows
        else:
            self.engine = Engine()
            for flow in flows:
                self.engine.register(flow)
        self.queue = queue
        self.concurrency = concurrency
        self.queue_concurrency = queue_concurrency
        self.rate = Rate.parse(rate) if rate is not None else None
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else lease_s / 3
        self.worker_id = worker_id or default_worker_id()
        self.max_stalls = max_stalls
        self.sweep_every_s = sweep_every_s if sweep_every_s is not None else max(0.5, lease_s / 2)
        self.retention = retention
        self.alerts = Alerts(alerts, self.store) if alerts is not None else None
        self.shutdown_grace_s = shutdown_grace_s
        self.poll_min_s = poll_min_s
        self.poll_max_s = poll_max_s
        self.schedules = schedules

        self.exit_after_grace = exit_after_grace
        self.journal: StepJournal | None = None
        self.durable: DurableJournal | None = None
        if record_steps:
            self.journal = StepJournal(self.store, worker_id=self.worker_id, on_lost=self._lease_lost)
        if durable:
            self.durable = DurableJournal(self.store, fenced=True, on_lost=self._lease_lost)
        # an engine's own journal (a LogJournal, say) is kept: every journal hears every record
        self._engine_journal = self.engine.journal  # (put back when the worker stops)
        journals = [j for j in (self.engine.journal, self.journal, self.durable) if j is not None]
        if journals:
            self.engine.journal = journals[0] if len(journals) == 1 else Journals(*journals)
        self.running: dict[str, Job | None] = {}  # claimed: the runtime job once started
        self._reporting: set[str] = set()  # finished here, outcome not yet in the store
        self._done: list[Done] = []
        self._tokens: dict[str, int] = {}  # the fencing token of each job held
        self._lost: set[str] = set()
        self.lost = 0  # jobs this worker lost (taken over, cancelled) while it held them
        self.cut_short = False  # the grace period ended with jobs still running
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._report_wake = asyncio.Event()
        self._reports_idle = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._job_tasks: set[asyncio.Task[None]] = set()
        self.completed = 0
        self.failed = 0
        self.reports = 0  # claims and outcomes written to the store so far (see ``wait_reports``)
        self._reports_changed = asyncio.Condition()

    # -- lifecycle ----------------------------------------------------------------------

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
            await self._retrying("open", self.store.open)
        try:
            recovered = await self._retrying("recover", self.store.recover, self.worker_id, self.max_stalls)
            if recovered:
                log.info("jobs_recovered", worker=self.worker_id, jobs=recovered)
            log.info("worker_started", worker=self.worker_id, queue=self.queue, store=self.store.url)
            loops = [self._heartbeat(), self._reporter(), self._sweeper()]
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
            self.engine.journal = self._engine_journal
            if self._owns_engine:
                await self.engine.close()
            if self._owns_store:
                await self.store.close()
            log.info("worker_stopped", worker=self.worker_id, completed=self.completed, failed=self.failed)

    async def _retrying(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(*args)``, retried with backoff while the store fails (until ``stop()``)."""
        delay = RECONNECT_MIN_S
        while True:
            try:
                return await fn(*args)
            except LeaseLostError:
                raise  # not the store failing: the job is not ours any more
            except StoreError as e:
                if self._stopping.is_set() and what != "report":
                    raise
                log.warning(
                    "store_unavailable", worker=self.worker_id, during=what, error=str(e), retry_in_s=delay
                )
                await self._sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short by ``stop()``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # -- claiming -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        idle = self.poll_min_s
        delay = RECONNECT_MIN_S
        while not self._stopping.is_set():
            free = self.concurrency - len(self.running)
            if free <= 0:
                self._slot_free.clear()
                await _first(self._slot_free.wait(), self._stopping.wait())
                continue
            try:
                claim = await self.store.claim(
                    self.queue,
                    self.worker_id,
                    limit=free,
                    lease_s=self.lease_s,
                    queue_concurrency=self.queue_concurrency,
                    rate=self.rate,
                    max_stalls=self.max_stalls,
                )
            except StoreError as e:
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
                self.running[record.id] = None
                self._tokens[record.id] = record.token
                if self.durable is not None:
                    self.durable.begin(record.id, record.token)
                task = asyncio.get_running_loop().create_task(
                    self._run_job(record), name=f"weirflow:run:{record.id}"
                )
                self._job_tasks.add(task)
                task.add_done_callback(self._job_tasks.discard)
            if claim.jobs:
                idle = self.poll_min_s
            if len(claim.jobs) < free:
                wait = idle if claim.wait_s is None else min(max(claim.wait_s, 0.001), self.poll_max_s)
                await _first(self.store.wait_for_jobs(self.queue, wait), self._stopping.wait())
                if not claim.jobs:
                    idle = min(self.poll_max_s, idle * 2)

    # -- running ------------------------------------------------------------------------

    async def _run_job(self, record: JobRecord) -> None:
        job: Job | None = None
        try:
            flow = self.engine.flow(record.flow)
            if self.journal is not None:
                self.journal.begin(record.id, record.runs)
            restore = await self._restore(record, flow)
            job = await self.engine.start(flow, record.inputs, job_id=record.id, restore=restore)
            self.running[record.id] = job
            if record.id in self._lost:  # cancelled in the store before it started here
                await job.cancel()
            try:
                result: JobResult | None = await job.wait(record.timeout_s)
            except JobTimeoutError:
                await job.cancel(reason="job_timeout", error=f"timed out after {record.timeout_s:g}s")
                result = None
            if record.id in self._lost:
                self._lost.discard(record.id)
                self._reported([])
                return
            if result is None:
                self._report_failure(record.id, f"timed out after {record.timeout_s:g}s; job cancelled")
            elif result.status is JobStatus.COMPLETED:
                self._done.append((record.id, record.token, _json_safe(result.outputs), _letters(result)))
                self._reporting.add(record.id)
                self._report_wake.set()
            elif result.status is JobStatus.CANCELLED and self._stopping.is_set():
                await self._give_back([record.id])
                self._reported([])
            else:
                error = result.error or f"job {result.status.value}"
                self._report_failure(record.id, error, detail=result.traceback, dead_letters=_letters(result))
        except LeaseLostError as e:
            self._lease_lost(record.id, str(e))
            self._lost.discard(record.id)
            self._reported([])
        except JobError as e:  # unknown flow, bad inputs: retrying cannot help
            self._report_failure(record.id, str(e), retry=False)
        except Exception as e:  # noqa: BLE001 - any other failure to run is a failed attempt
            self._report_failure(record.id, f"{type(e).__name__}: {e}", detail=format_traceback(e))
        finally:
            self.running.pop(record.id, None)
            if record.id not in self._reporting:
                self._forget(record.id)
            self._slot_free.set()
            if job is not None and job.finished:
                with contextlib.suppress(JobError):
                    self.engine.forget(job.id)

    async def _restore(self, record: JobRecord, flow: Flow) -> Restore | None:
        """Where a job taken over (after a crash, a stall or a retry) resumes: its journal's
        replay — completed steps are not run again — or nothing with ``from_start``."""
        if self.durable is None:
            return None
        if record.from_start:
            clear = functools.partial(self.store.clear_journal, token=record.token)
            await self._retrying("journal", clear, record.id)
            return None
        if record.runs <= 1:  # a first run has no journal yet: no read
            return None
        records = await self._retrying("journal", self.durable.records_of, record.id)
        if self.journal is not None:
            await self._reconcile_steps(record, records)
        if not records:
            return None
        restore = restore_from(records, flow)
        log.info("job_resumed", worker=self.worker_id, job=record.id, steps_done=restore.steps_done)
        return restore

    async def _reconcile_steps(self, record: JobRecord, records: Sequence[Any]) -> None:
        """Make a taken-over job's step rows say what its journal committed, before it resumes."""
        rows = await self._retrying("journal", self.store.steps, record.id)
        fixed = reconciled(record.id, records, rows, token=record.token, now=self.store.clock())
        if fixed:
            refused = await self._retrying("journal", self.store.record_steps, fixed)
            if refused:
                raise LeaseLostError(refused, "taken over while resuming")

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
        task = asyncio.get_running_loop().create_task(self._fail(job_id, error, fail))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fail(self, job_id: str, error: str, fail: Callable[..., Awaitable[JobRecord]]) -> None:
        try:
            if self.journal is not None:
                await self._retrying("report", self.journal.flush)
            if self.durable is not None:  # a retry resumes from what the journal holds
                await self._retrying("report", self.durable.flush)
            if job_id in self._lost:
                return
            token = self._tokens.get(job_id)
            if token is None:
                return
            try:
                record = await self._retrying("report", fail, job_id, self.worker_id, token, error)
            except LeaseLostError as e:
                self._lease_lost(job_id, str(e))
                return
        finally:
            self._reported([job_id])
            self._forget(job_id)
        self.failed += 1
        log.info("job_failed", worker=self.worker_id, job=job_id, error=error, status=record.status)

    async def _reporter(self) -> None:
        """Write completions in batches: whatever finished while the last batch was written."""
        while True:
            await self._report_wake.wait()
            self._report_wake.clear()
            while self._done:
                batch, self._done = self._done, []
                if self.journal is not None:  # the steps first: a completed job has its steps
                    await self._retrying("report", self.journal.flush)
                if self.durable is not None:
                    await self._retrying("report", self.durable.flush)
                held = [d for d in batch if d[0] not in self._lost]
                refused = await self._retrying("report", self.store.complete, self.worker_id, held)
                for job_id in refused:
                    self._lease_lost(job_id, "its outcome was refused")
                self.completed += len(held) - len(refused)
                self._reported([d[0] for d in batch])
                for d in batch:
                    self._forget(d[0])

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

    # -- leases ---------------------------------------------------------------------------

    def _lease_lost(self, job_id: str, why: str = "refused by the store") -> None:
        """The store refused a write for ``job_id`` (a stale token) or did not renew its
        lease: another worker owns it now, or it was cancelled. Stop it here at once and
        write nothing more for it."""
        if job_id not in self._tokens or job_id in self._lost:
            return
        self._lost.add(job_id)
        self.lost += 1
        log.warning("lease_lost", worker=self.worker_id, job=job_id, token=self._tokens[job_id], why=why)
        if self.journal is not None:
            self.journal.forget(job_id)
        if self.durable is not None:
            self.durable.forget(job_id)
        job = self.running.get(job_id)
        if job is not None and not job.finished:
            task = asyncio.get_running_loop().create_task(self._cancel(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if job_id not in self.running and job_id in self._reporting:
            self._done = [d for d in self._done if d[0] != job_id]

    @staticmethod
    async def _cancel(job: Job) -> None:
        await job.cancel()

    def _forget(self, job_id: str) -> None:
        """This worker is done with ``job_id`` (reported, given back or lost)."""
        self._tokens.pop(job_id, None)
        if self.durable is not None:
            self.durable.forget(job_id)
        if self.journal is not None:
            self.journal.forget(job_id)

    def _held(self) -> dict[str, int]:
        return {j: t for j, t in self._tokens.items() if j not in self._lost}

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

    # -- shutdown -------------------------------------------------------------------------

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

    async def _give_back(self, job_ids: list[str]) -> None:
        """Release ``job_ids`` at once (after committing what the next worker resumes from)."""
        if self.journal is not None:
            with contextlib.suppress(StoreError):
                await self.journal.flush()
        if self.durable is not None:
            await self._retrying("release", self.durable.flush)
        leases = {j: self._tokens[j] for j in job_ids if j in self._tokens and j not in self._lost}
        if leases:
            for job_id in await self._retrying("release", self.store.release, leases, self.worker_id):
                self._lease_lost(job_id, "its release was refused")
            log.info("jobs_released", worker=self.worker_id, jobs=sorted(leases))

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


async def _first(*aws: Awaitable[Any]) -> None:
    """Wait until the first of ``aws`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _letters(result: JobResult) -> list[dict[str, Any]]:
    """The job's dead letters as stored: JSON values, items that are not as their ``repr``."""
    letters: list[dict[str, Any]] = json.loads(
        json.dumps([d.to_dict() for d in result.dead_letters], default=repr)
    )
    return letters


def _json_safe(outputs: dict[str, list[Any]]) -> dict[str, Any]:
    """Outputs as stored: JSON values, anything else as its ``repr``."""
    result: dict[str, Any] = json.loads(json.dumps(outputs, default=repr))
    return result
