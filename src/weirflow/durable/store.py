"""The ``Store`` protocol every backend implements, and ``open_store(url)``.

A store holds jobs, their steps and events, and enforces the queue semantics:
idempotent submits, claims by priority then age that respect delays, queue-wide
concurrency and rate limits, leases, retries with backoff, stalls and retention.
Every method is a coroutine; no backend blocks the event loop.

Times are seconds since the epoch from the store's ``clock`` (``time.time`` unless
given): workers on several machines must have synchronised clocks.

Fencing: every claim of a job makes a new **fencing token**, the job's ``runs`` after
the claim (``JobRecord.token``), which only grows. Every write a worker makes for a
job it claimed carries that token — journal appends, step rows (``StepRecord.run``),
progress, heartbeats, the outcome and a release — and the store refuses it, in the
same statement or transaction as the write, unless the job is still ``running`` under
that token. A write for several jobs writes those still held and returns the ids it
refused; a write for one job raises ``LeaseLostError``. So a worker that was paused past
its lease (``SIGSTOP``, a long GC, a network partition) and comes back can no longer
change a job that another worker took over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..errors import StoreError
from ..redact import redact_url
from .models import (
    Claim,
    Done,
    EventRecord,
    JobRecord,
    JobSpec,
    QueueCounts,
    Rate,
    Retention,
    StepRecord,
    SweepReport,
)
from .rules import TAKEOVER_CHECK_S as TAKEOVER_CHECK_S
from .schedules import Fired, Schedule

Clock = Callable[[], float]
DEFAULT_LEASE_S = 30.0
DEFAULT_MAX_STALLS = 3

Leases = Mapping[str, int]
"""Job id -> the fencing token of the claim that holds it."""
SWEEPER_LOCK_TTL_S = 60.0


@runtime_checkable
class Store(Protocol):
    """A durable job store. Open with ``await store.open()`` (or ``async with store``)."""

    url: str
    clock: Clock

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def submit(self, spec: JobSpec) -> str:
        """Queue a job; returns its id. A second submit with the same
        ``(queue, idempotency_key)`` returns the first job's id, also when concurrent."""

    async def submit_once(self, spec: JobSpec) -> tuple[str, bool]:
        """``submit``, also saying whether this call created the job (``False``: a submit
        with the same key did, also when they were concurrent)."""

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[tuple[str, bool]]:
        """``submit_once`` of each spec, in one transaction (PostgreSQL: one statement, one
        ``NOTIFY`` per queue): ``(id, created)`` in the order given. A spec whose
        ``(queue, idempotency_key)`` an earlier job holds, or an earlier spec of the same
        batch, gets that job's id and ``created=False``."""

    async def claim(
        self,
        queue: str,
        worker_id: str,
        *,
        limit: int,
        lease_s: float,
        queue_concurrency: int | None = None,
        rate: Rate | None = None,
        max_stalls: int = DEFAULT_MAX_STALLS,
        node: str | None = None,
    ) -> Claim:
        """Take up to ``limit`` ready jobs (``run_at`` reached), highest ``priority`` first,
        then longest waiting; each moves to ``running`` with a lease for ``worker_id`` and
        a new fencing token (``JobRecord.token``). ``queue_concurrency`` caps the queue's
        running jobs, ``rate`` its claims per window, over every worker of this store.

        Running jobs of the queue whose lease expired are taken back first (at most every
        ``TAKEOVER_CHECK_S``), as the sweeper does (``max_stalls``): a stalled job keeps
        its place in the queue, so a free worker takes it over within about a lease.

        Jobs assigned to a node (``JobRecord.node``) go only to that node's claims: with
        ``node`` (the claiming worker's node id) a claim takes the ready jobs assigned to it
        first, then unassigned ones, which it assigns to itself; without, only unassigned
        ones."""

    async def reassign(self, node_id: str) -> list[str]:
        """Give the queued jobs assigned to ``node_id`` (a node that is gone) back to their
        queues' pools: unassigned, claimable by any worker of the queue, each with a
        ``reassigned`` event. Returns their ids. Atomic: however many callers reassign a
        node at once, each job is given back once (the others get ``[]``). Running jobs
        stay: their lease expiry hands them back."""

    async def assigned_nodes(self) -> list[str]:
        """The node ids that queued or running jobs are assigned to, sorted (the cluster's
        ``Reassigner`` gives back the queued jobs of those its registry does not know)."""

    async def renew(self, worker_id: str, leases: Leases, lease_s: float) -> list[str]:
        """Extend the leases ``worker_id`` holds (job id -> token); returns the ids it still
        holds (a job cancelled or taken over meanwhile is missing)."""

    async def complete(
        self, worker_id: str, done: Sequence[Done], steps: Sequence[StepRecord] = ()
    ) -> list[str]:
        """Mark jobs ``(id, token, outputs)`` or ``(id, token, outputs, dead_letters)``
        completed; returns the ids refused (not held by ``worker_id`` under that token:
        nothing is written for them). ``steps``: the jobs' last step rows, written with
        their outcomes (a row of another job, or of another run than the token's, is not
        written; a ``running`` one is written ``interrupted``, as the job's other running
        rows become). A row the store cannot hold raises ``StoreRefusedError`` and nothing
        is written."""

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        token: int,
        error: str,
        *,
        retry: bool = True,
        detail: str | None = None,
        dead_letters: list[dict[str, Any]] | None = None,
    ) -> JobRecord:
        """Fail the current attempt: requeued after the job's backoff while attempts remain,
        else ``failed`` (keeping ``dead_letters``). ``detail`` (the traceback) is kept as the
        job's ``error_detail`` and in the event. ``LeaseLostError`` if ``worker_id`` no
        longer holds the job under ``token``."""

    async def release(self, leases: Leases, worker_id: str) -> list[str]:
        """Give running jobs back to the queue at once (shutdown); attempts do not count.
        Returns the ids refused (not held under that token)."""

    async def release_unheld(
        self, worker_id: str, held: Collection[str], *, claimed_since: float
    ) -> list[str]:
        """Give back, as ``release`` does (the attempt does not count, no stall), every job
        running under ``worker_id``, claimed at or after ``claimed_since`` (the store's
        clock), that is not in ``held``: those of a claim whose reply the worker never got
        (the store ran it, the call failed; a job claimed before, which the worker has
        stopped, is not one: its attempt ran). Returns their ids."""

    async def recover(self, worker_id: str, max_stalls: int = DEFAULT_MAX_STALLS) -> list[str]:
        """Requeue (as stalled) the jobs a previous run of ``worker_id`` left running."""

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued or running job (its worker notices at the next heartbeat)."""

    async def retry(self, job_id: str, *, from_start: bool = False) -> JobRecord:
        """Requeue a failed, cancelled or stalled job with fresh attempts."""

    async def pause_queue(self, queue: str) -> bool:
        """Stop claims of ``queue``'s jobs (``rules.claimable``): running jobs go on, submits
        are queued; ``False`` if it was paused already. A ``queue_paused`` event says when."""

    async def resume_queue(self, queue: str) -> bool:
        """Let ``queue``'s jobs be claimed again, waking its idle workers; ``False`` if it
        was not paused. A ``queue_resumed`` event says when."""

    async def paused_queues(self) -> list[str]:
        """The paused queues, by name."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: str | None = None,
        flow: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Newest first: the jobs matching every filter given, ``offset`` of them skipped."""

    async def record_steps(self, steps: Sequence[StepRecord]) -> list[str]:
        """Insert or update step rows (one per job, routine and seq: a re-run of a step
        updates its row). A row is written only while its job is running under the
        token ``step.run``; returns the job ids refused."""

    async def steps(self, job_id: str) -> list[StepRecord]:
        """In start order."""

    async def add_event(self, job_id: str | None, queue: str, kind: str, data: dict[str, Any]) -> None: ...

    async def events(
        self, *, job_id: str | None = None, kind: str | None = None, since: float | None = None
    ) -> list[EventRecord]:
        """Oldest first."""

    async def sweep(
        self,
        owner: str,
        *,
        max_stalls: int = DEFAULT_MAX_STALLS,
        retention: Retention | None = None,
        lock_ttl_s: float = SWEEPER_LOCK_TTL_S,
    ) -> SweepReport | None:
        """Requeue running jobs whose lease expired (counting a stall, failing after
        ``max_stalls``) and apply ``retention``. Only one sweeper at a time per store:
        ``None`` when another ``owner`` holds the sweeper lock."""

    async def clean(self, retention: Retention) -> int:
        """Apply ``retention`` now, as a sweep would (without its lock: deleting is safe
        beside a sweeper): delete the finished jobs it says, with their steps, events and
        journals. Returns how many jobs were deleted."""

    async def running_since(self, before: float) -> list[JobRecord]:
        """Running jobs started before ``before`` (for the long-running alert)."""

    async def finished_counts(self, queue: str, since: float) -> tuple[int, int]:
        """``(failed, finished)`` attempts of ``queue`` since ``since`` (a retried attempt
        counts as failed), for the failure-rate alert."""

    async def queue_counts(self) -> list[QueueCounts]:
        """Every queue's jobs now, by status (for the metrics), by queue name."""

    async def wait_for_jobs(self, queue: str, timeout_s: float) -> None:
        """Return when a job may have become ready in ``queue`` or after ``timeout_s``."""

    async def wait_finished(self, job_id: str, timeout_s: float | None) -> JobRecord | None:
        """The job once it is completed, failed or cancelled, waiting at most ``timeout_s``
        (then the job as it is); ``None`` for an unknown id. Woken by the store's
        notifications (PostgreSQL ``NOTIFY``, in-process wake-ups), not by polling."""

    # -- schedules (``weirflow.durable.schedules``) ------------------------------------------

    async def add_schedule(self, schedule: Schedule) -> Schedule:
        """Create or replace the schedule of that name; returns it as stored. Re-added with
        the same timing it keeps its next tick (so no tick is missed by re-adding it at
        every start); with another timing it first ticks after now."""

    async def remove_schedule(self, name: str) -> bool:
        """Delete the schedule; ``False`` if there was none of that name."""

    async def list_schedules(self, *, queue: str | None = None) -> list[Schedule]:
        """By name."""

    async def fire_schedules(self, queue: str) -> Fired:
        """Make the jobs of ``queue``'s due ticks (by ``Schedule.due``), each with its
        tick's idempotency key, in the transaction that moves each schedule on: one job
        per tick however many workers call this at once."""

    async def wait_for_schedules(self, queue: str, timeout_s: float) -> None:
        """Return when ``queue``'s schedules changed (added, replaced, removed) or after
        ``timeout_s`` (a store that cannot hear other processes' changes waits less)."""

    # -- the durable journal's records (``weirflow.durable.journal_store.JournalStore``) --------

    async def append_journal(
        self,
        rows: Sequence[tuple[str, str]],
        *,
        tokens: Leases | None = None,
        batches: Mapping[str, int] | None = None,
        resent: bool = False,
    ) -> list[str]:
        """Append ``(job_id, record_json)`` rows, in order, in one transaction, and return
        the job ids refused. With ``tokens`` (a worker's writes) the rows of a job are
        written only while it runs under its token there; without, a job id the store
        does not hold is a ``StoreRefusedError`` (nothing of the batch is written; the
        durable journal then sends it job by job). With
        ``batches`` (and ``tokens``: job id -> the number of this batch of its rows
        within its claim, from 1) the store keeps each job's last batch number; with
        ``resent`` too (the batch's append failed before: it may have committed), a
        job's rows are skipped, and the job not refused, when the last batch the store
        holds of it is of the same token and numbered as high or higher: a batch sent
        again after its reply was lost is written once. (Only a resend pays for the
        check.)"""

    async def read_journal(self, job_id: str) -> list[str]:
        """Every record of ``job_id`` in the order appended."""

    async def clear_journal(self, job_id: str, *, token: int | None = None) -> None:
        """Forget ``job_id``'s records (a retry from the start) and, in the same atomic
        step, its ``from_start`` (consumed: a later takeover of this run resumes its
        journal); with ``token``, only while the job runs under it (else
        ``LeaseLostError``, and neither changes)."""


def open_store(url: str, *, clock: Clock = time.time, **options: Any) -> Store:
    """A store for ``url`` (not yet opened): ``memory://``, ``sqlite:///relative/path.db``,
    ``sqlite:////absolute/path.db``, ``postgresql://user@host:port/db`` or
    ``redis://[:password@]host:port/db``."""
    if not isinstance(url, str) or "://" not in url:
        shown = redact_url(url) if isinstance(url, str) else url
        raise StoreError(
            f"store URL {shown!r} is not a URL: use memory://, sqlite:///path/weirflow.db, "
            "postgresql://... or redis://..."
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        from .memory import MemoryStore

        if url.rstrip("/") != "memory:":
            raise StoreError(f"store URL {redact_url(url)!r}: memory:// takes no path")
        return MemoryStore(clock=clock)
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(sqlite_path(url), clock=clock, **options)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        parts = urlsplit(url)
        if not parts.hostname and "host=" not in (parts.query or ""):
            raise StoreError(
                f"store URL {redact_url(url)!r}: a PostgreSQL URL needs a host (postgresql://host/db)"
            )
        return PostgresStore(url, clock=clock, **options)
    if scheme in ("redis", "rediss", "unix"):
        from ..redis_url import redis_url_problem
        from .redis_base import redacted
        from .redis_store import RedisStore

        parts = urlsplit(url)
        if scheme != "unix" and not parts.hostname:
            raise StoreError(f"store URL {redacted(url)!r}: a Redis URL needs a host (redis://host:port/db)")
        problem = redis_url_problem(url)
        if problem is not None:
            raise StoreError(f"store URL {redacted(url)!r}: {problem}")
        return RedisStore(url, clock=clock, **options)
    raise StoreError(
        f"store URL {redact_url(url)!r}: unknown scheme {scheme!r} "
        "(expected memory, sqlite, postgresql or redis)"
    )


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite://`` URL, or ``None`` for another scheme."""
    return sqlite_path(url) if url.lower().startswith("sqlite:") else None


def sqlite_path(url: str) -> Path:
    """``sqlite:///weirflow.db`` is relative to the working directory, ``sqlite:////x.db`` absolute."""
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix):
        raise StoreError(
            f"store URL {redact_url(url)!r}: a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path, _, query = url[len(prefix) :].partition("?")
    if query:  # refused rather than ignored: sqlite:///x.db?mode=ro would otherwise write
        raise StoreError(
            f"store URL {redact_url(url)!r}: a SQLite URL takes no options ({query!r}); "
            "a read-only store is not supported"
        )
    if not path or path.endswith("/"):
        raise StoreError(f"store URL {redact_url(url)!r}: no database file named")
    return Path(path)
