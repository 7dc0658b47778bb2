"""``StepJournal``: one steps row per handler call, with its progress, for display.

This is the *progress* journal: it records what ran — status, times, attempt,
worker, error and the latest ``ctx.progress(pct, message)`` — so users can
follow a job step by step (``weirflow jobs steps ID``). It does not make jobs
resumable; that is the durable journal's work, which may extend this one.

The runtime calls the step methods synchronously on the loop; rows are buffered
and written in batches (``flush_s`` after the first buffered change, and by the
worker before it writes a job's outcome), so a step never waits on the store.
Retries of one call share its row (``attempt`` says which one ran last), also a
re-run after a crash: the row of ``(job, routine, seq)`` is updated.

Rows carry the fencing token of the worker's claim (``run``): the store refuses
them once the job was taken over, and ``on_lost`` hears of it. When a job is taken
over, ``reconciled`` makes its rows say what the journal committed before the job
resumes.

A refused write comes a batch late, though: a worker stopped past its lease (``SIGSTOP``,
a loaded machine) and continued would go on starting steps of a job another worker owns
now, their handlers' side effects and all, until then. So every step start first asks
``may_start(job_id)`` (the worker answers: the job is not lost and its lease cannot have
run out yet); on ``False`` the start raises ``StepRefused``, a cancellation: the handler
never runs and the call's items settle as cancelled in this (lost) run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from ..errors import JobError, StoreError, StoreRefusedError
from ..runtime.journal import Journal, Step
from .journal import decoded
from .models import COMPLETED, FAILED, INTERRUPTED, RUNNING, StepRecord

if TYPE_CHECKING:
    from ..runtime.job import Job
    from ..runtime.results import JobResult
    from .store import Store

log = structlog.get_logger("weirflow.durable")

DEFAULT_FLUSH_S = 0.2

T = TypeVar("T")


class StepRefused(asyncio.CancelledError):
    """A step of a job this worker no longer holds (or may no longer hold) was about to
    start: it does not. A ``CancelledError``, so the runtime settles the call's items as
    cancelled without knowing of leases (``runtime`` imports nothing from ``durable``)."""


RowKey = tuple[str, int, str, int]  # job, run, routine, seq


class StartFence(Journal):
    """Only the ``may_start`` check of ``StepJournal``: what a worker that records no step
    rows (``record_steps=False``) puts before its durable journal. It keeps no ``Step`` and
    reads no times (the runtime may reuse one ``Step`` for a routine's calls in a row)."""

    keeps_steps = False
    reads_times = False

    def __init__(self, may_start: Callable[[str], bool]) -> None:
        self.may_start = may_start

    def step_started(self, job: Job, step: Step) -> None:
        if not self.may_start(job.id):
            raise StepRefused(f"job {job.id} is not this worker's any more: step {step.routine} not started")


class StepJournal(Journal):
    """Writes steps rows of the jobs a worker runs to ``store``.

    The worker calls ``begin(job_id, run)`` before it starts a job (``run`` is the
    job's ``runs``), so rows of a re-run job (after a crash or a retry) are kept
    apart from the earlier runs'.
    """

    def __init__(
        self,
        store: Store,
        *,
        worker_id: str,
        flush_s: float = DEFAULT_FLUSH_S,
        on_lost: Callable[[str], None] | None = None,
        may_start: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.flush_s = flush_s
        self.on_lost = on_lost
        # asked before every step start: ``False`` refuses it (``StepRefused``)
        self.may_start = may_start
        self._attempts: dict[str, int] = {}
        # the rows to write: the step and the status it was recorded with (the row is made
        # from them when it is written: a step's fields no longer change once it has ended)
        self._rows: dict[RowKey, tuple[Step, str] | StepRecord] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # jobs forgotten while a flush had their rows out (cleared when a flush starts): a
        # failed flush does not put their rows back (a run begun since would be sent them)
        self._gone: set[str] = set()

    def begin(self, job_id: str, run: int) -> None:
        self._attempts[job_id] = run

    def forget(self, job_id: str) -> None:
        """Drop what is buffered for ``job_id`` and record nothing more of it (its lease
        was lost: another worker owns its rows now)."""
        self._attempts.pop(job_id, None)
        self._gone.add(job_id)
        for key in [k for k in self._rows if k[0] == job_id]:
            del self._rows[key]

    def _record(self, job: Job, step: Step, status: str) -> None:
        run = self._attempts.get(job.id)
        if run is None:  # not (or no longer) this worker's job
            return
        self._rows[(job.id, run, step.routine, step.seq)] = (step, status)
        flusher = self._flusher
        if flusher is None or flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    def _row(self, key: RowKey, what: tuple[Step, str] | StepRecord) -> StepRecord:
        if isinstance(what, StepRecord):
            return what
        step, status = what
        if status == RUNNING:  # as it was when it started (or reported progress)
            return StepRecord(
                job_id=key[0],
                routine=step.routine,
                seq=step.seq,
                status=status,
                attempt=step.attempt,
                run=key[1],
                progress=step.progress or 0.0,
                message=step.message,
                started_at=step.started_at or None,
                worker=self.worker_id,
            )
        return StepRecord(
            job_id=key[0],
            routine=step.routine,
            seq=step.seq,
            status=status,
            attempt=step.attempt,
            run=key[1],
            progress=100.0 if status == "completed" else (step.progress or 0.0),
            message=step.message,
            started_at=step.started_at or None,
            completed_at=step.completed_at,
            error=step.error,
            worker=self.worker_id,
            traceback=step.traceback,
        )

    def step_started(self, job: Job, step: Step) -> None:
        may_start = self.may_start
        if may_start is not None and not may_start(job.id):
            raise StepRefused(f"job {job.id} is not this worker's any more: step {step.routine} not started")
        self._record(job, step, "running")

    def step_progress(self, job: Job, step: Step) -> None:
        self._record(job, step, "running")

    def step_completed(self, job: Job, step: Step) -> None:
        self._record(job, step, step.status)

    def job_finished_now(self, job: Job, result: JobResult) -> None:
        # (plain: nothing to await, so the job closes in the frame that ended it)
        # the rows stay buffered: the worker flushes them with the batch of outcomes it
        # writes next, so a job's steps are in the store before its outcome is
        self._attempts.pop(job.id, None)

    async def _flush_later(self) -> None:
        while True:  # rows recorded while a flush was under way go with the next one
            await asyncio.sleep(self.flush_s)
            with contextlib.suppress(StoreError):
                await self.flush()
            if not self._rows:
                return

    async def flush(self) -> None:
        """Write every buffered row now; on ``StoreError`` the rows stay buffered."""
        async with self._lock:
            if not self._rows:
                return
            rows, self._rows = self._rows, {}
            self._gone = set()  # (a job forgotten before this flush has no rows in it)
            made = {key: self._row(key, what) for key, what in rows.items()}
            try:
                refused = await self.store.record_steps(list(made.values()))
            except StoreRefusedError:  # a row the store cannot hold: the others still go in
                refused = await self._job_by_job(made)
            except StoreError as e:
                log.warning("steps_not_recorded", rows=len(rows), error=str(e))
                self._put_back(made)
                raise
            for job_id in refused:
                current = self._attempts.get(job_id)
                if current is not None and current not in {key[1] for key in made if key[0] == job_id}:
                    continue  # refused for an earlier run's rows: the run begun since is not lost
                self.forget(job_id)
                if self.on_lost is not None:
                    self.on_lost(job_id)

    async def with_finished(
        self, tokens: Mapping[str, int], write: Callable[[list[StepRecord]], Awaitable[T]]
    ) -> T:
        """``write(rows)``: the buffered rows of the finished jobs ``tokens`` (job id -> run),
        so the worker writes them with the jobs' outcomes (``Store.complete(steps=...)``)
        instead of in a flush of their own. Under the flush lock (a flush under way writes
        its rows first); the rows leave the buffer once ``write`` returns, and stay in it
        if it raises."""
        async with self._lock:
            keys = [key for key in self._rows if tokens.get(key[0]) == key[1]]
            made = [self._row(key, self._rows[key]) for key in keys]
            result = await write(made)
            for key in keys:
                self._rows.pop(key, None)
            return result

    async def _job_by_job(self, made: dict[RowKey, StepRecord]) -> list[str]:
        """Write ``made`` one job at a time, after the store refused the batch for what it
        holds: the rows of a job it refuses again are dropped, with a log (they are for
        display; the job's outcome is still written), the others are written."""
        by_job: dict[str, dict[RowKey, StepRecord]] = {}
        for key, row in made.items():
            by_job.setdefault(key[0], {})[key] = row
        refused: list[str] = []
        pending = list(by_job.items())
        while pending:
            job_id, rows = pending[0]
            try:
                refused += await self.store.record_steps(list(rows.values()))
            except StoreRefusedError as e:
                log.warning("steps_not_stored", job=job_id, rows=len(rows), error=str(e))
            except StoreError:
                for _, left in pending:  # (as in ``flush``: kept for the next one)
                    self._put_back(left)
                raise
            pending.pop(0)
        return refused

    def _put_back(self, made: dict[RowKey, StepRecord]) -> None:
        """Buffer again the rows of a flush that failed (as they were: a later record
        replaces them), but for the jobs forgotten since the flush took them: their lease
        was lost, so their rows are not this worker's to write (and sent next to the rows
        of a run begun since, they would make the store refuse that run). A job that
        finished meanwhile (``job_finished_now``) keeps its rows."""
        for key, row in made.items():
            if key[0] not in self._gone:
                self._rows.setdefault(key, row)

    async def close(self) -> None:
        """Stop the timer and write what is left (best effort)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(StoreError):
            await self.flush()


def reconciled(
    job_id: str, records: Sequence[Any], rows: list[StepRecord], *, token: int, now: float
) -> list[StepRecord]:
    """The step rows to write, under ``token``, so that a job's rows say what its journal
    ``records`` (``LogJournal`` records, as committed) hold, before the job resumes:
    a step the journal finished is ``completed`` (or ``failed``) with its attempt; a
    step it started and did not finish, or one it holds nothing of but a row says ran,
    is ``interrupted`` (it runs again). Rows already right are not written."""
    truth: dict[tuple[str, int], tuple[str, int, str | None]] = {}  # status, attempt, error
    for rec in records:  # (a step's end after the job's end is still how it ended)
        kind = rec["t"]
        if kind == "start":
            truth[(rec["routine"], rec["seq"])] = (INTERRUPTED, rec["attempt"], None)
        elif kind == "done" and (rec["status"] == COMPLETED or rec["final"]):
            status = COMPLETED if rec["status"] == COMPLETED else FAILED
            truth[(rec["routine"], rec["seq"])] = (status, rec["attempt"], rec.get("error"))
    have = {(r.routine, r.seq): r for r in rows}
    out: list[StepRecord] = []
    for (routine, seq), (status, attempt, error) in truth.items():
        row = have.get((routine, seq))
        if row is not None and row.status == status and row.attempt == attempt:
            continue
        why = error if status == FAILED else None
        if status == INTERRUPTED:
            why = row.error if row is not None and row.status == INTERRUPTED else _UNFINISHED
        out.append(_row(job_id, row, routine, seq, status, attempt, why, token, now))
    for key, row in have.items():
        if key not in truth and row.status != INTERRUPTED:
            why = row.error if row.status == RUNNING and row.error else _UNRECORDED
            out.append(_row(job_id, row, row.routine, row.seq, INTERRUPTED, row.attempt, why, token, now))
    return out


def finished_by_journal(
    job_id: str, records: Sequence[Any], rows: list[StepRecord], *, token: int, worker: str | None, now: float
) -> list[StepRecord]:
    """The rows of ``reconciled`` that say a step ended (``completed`` or ``failed``): what
    a store writes when it takes a job over, so that a step the journal finished is not
    left ``interrupted`` because its row was still in the dead worker's unflushed batch.
    A step with no row at all ran in the dead attempt: ``worker`` ran it."""
    out = []
    for row in reconciled(job_id, records, rows, token=token, now=now):
        if row.status in (COMPLETED, FAILED):
            if row.worker is None:
                row.worker = worker
            out.append(row)
    return out


def journal_finished(
    job_id: str, journal: Sequence[str], rows: list[StepRecord], *, token: int, worker: str | None, now: float
) -> list[StepRecord]:
    """``finished_by_journal`` of ``job_id``'s ``journal`` rows as the store holds them
    (one this weirflow cannot read finishes nothing: the worker that resumes the job
    fails it with the reason)."""
    try:
        records = decoded(job_id, journal)
    except (JobError, ValueError):
        records = []
    return finished_by_journal(job_id, records, rows, token=token, worker=worker, now=now)


def taken_over(
    job_id: str,
    journal: Sequence[str],
    rows: list[StepRecord],
    *,
    token: int,
    worker: str | None,
    now: float,
    why: str,
) -> list[StepRecord]:
    """The step rows a store writes, in the transaction that takes running job ``job_id``
    from its worker ``worker`` (claim ``token``; recovered, swept, cancelled, retried):
    the steps its ``journal`` finished say so (``journal_finished``: the worker writes
    its rows in batches after the journal, so a dead worker's last rows may be lost or
    still say ``running``), every other running step becomes ``interrupted`` with ``why``.
    The one rule of every SQL and memory store (the Redis store's ``PUT`` script does
    the same with ``journal_finished``)."""
    out = journal_finished(job_id, journal, rows, token=token, worker=worker, now=now)
    done = {(r.routine, r.seq) for r in out}
    for row in rows:
        if row.status == RUNNING and (row.routine, row.seq) not in done:
            out.append(dataclasses.replace(row, status=INTERRUPTED, completed_at=now, error=why))
    return out


_UNFINISHED = "interrupted: its worker stopped before the step's end was recorded"
_UNRECORDED = "interrupted: its worker stopped before the step was recorded in the journal; it runs again"


def _row(
    job_id: str,
    row: StepRecord | None,
    routine: str,
    seq: int,
    status: str,
    attempt: int,
    error: str | None,
    token: int,
    now: float,
) -> StepRecord:
    return StepRecord(
        job_id=job_id,
        routine=routine,
        seq=seq,
        status=status,
        attempt=attempt,
        run=token,
        progress=100.0 if status == COMPLETED else (row.progress if row is not None else 0.0),
        message=row.message if row is not None else "",
        started_at=row.started_at if row is not None else None,
        completed_at=(row.completed_at if row is not None and row.completed_at else now),
        error=error,
        worker=row.worker if row is not None else None,
    )
