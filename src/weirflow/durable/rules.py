"""The queue rules every backend follows, in one place.

A backend implements only its atomic primitives (take ready jobs, renew leases, refuse
a stale fencing token, append to the journal, write a changed job with its event); what
those primitives decide comes from here:

- **state transitions** of a job (``new_job``, ``claimed``, ``completed``,
  ``after_failure``, ``after_stall``, ``after_release``, ``cancel``, ``manual_retry``),
  computed on a ``JobRecord``: a backend reads the job inside its write transaction
  (or Lua script), applies one of these and writes the changed fields back;
- **fencing** (``holds``, ``runs_under``): which writes a worker may still make;
- **claim limits** (``claim_allowance``, ``in_rate_window``, ``claim_wait_s``,
  ``TakeoverTimer``): queue concurrency, rate windows, when to look again, how often a
  claim looks for expired leases;
- **retry and backoff** (``after_failure``), **stall accounting** (``after_stall``,
  ``lease_expired``, ``max_stalls``);
- **retention** (``expired_ids``, ``retention_cutoffs``) and the **sweeper lock**
  (``may_sweep``);
- **idempotency** (``first_of_keys``): which submit of a batch holds a key;
- **paused queues** (``claimable``, ``queue_change``): a paused queue hands out no job;
- **nodes** (``node_demand``, ``node_refusal``, ``reassigned``): a job assigned to a node
  is written only within the node's capacity; a claim by a node takes its own jobs first,
  then unassigned ones (and assigns them to itself); a job going back to ``queued`` after a
  failure, a stall, a release or a manual retry goes back to the pool (``node = None``).

The SQL backends and the Redis backend's Lua scripts do ``claimed``, ``completed``
and the fencing checks inside one statement or script for speed; each names the rule
it mirrors, and the shared store suite (``tests/durable/test_store.py``) checks that
every backend gives the same answers.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import JobError, NodeFullError
from .models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    JobRecord,
    JobSpec,
    Rate,
    Retention,
    StepRecord,
    storable_letters,
    storable_text,
)

#: a claim looks for expired leases of its queue at most this often (store clock)
TAKEOVER_CHECK_S = 0.5

# how long a retried job waits at least, so a zero backoff cannot spin a worker
MIN_RETRY_DELAY_S = 0.0


def new_job(spec: JobSpec, job_id: str, now: float) -> JobRecord:
    """A submitted job: ``queued``, due ``delay_s`` after ``now``, no attempt made yet."""
    return JobRecord(
        id=job_id,
        flow=spec.flow,
        inputs=copy.deepcopy(spec.inputs),
        queue=spec.queue,
        status=QUEUED,
        attempt=0,
        runs=0,
        max_attempts=spec.max_attempts,
        backoff=spec.backoff,
        priority=spec.priority,
        run_at=now + spec.delay_s,
        idempotency_key=spec.idempotency_key,
        timeout_s=spec.timeout_s,
        worker_id=None,
        lease_expires_at=None,
        stalls=0,
        error=None,
        outputs=None,
        from_start=False,
        created_at=now,
        started_at=None,
        finished_at=None,
        node=spec.node,
    )


def queued_event(spec: JobSpec) -> tuple[str, dict[str, Any]]:
    return "queued", {"delay_s": spec.delay_s}


def first_of_keys(specs: Sequence[JobSpec]) -> list[int | None]:
    """For each spec of a batch, the index of an earlier spec of the batch holding its
    ``(queue, idempotency_key)`` (it gets that spec's job, ``created=False``), else ``None``."""
    seen: dict[tuple[str, str], int] = {}
    out: list[int | None] = []
    for i, spec in enumerate(specs):
        if spec.idempotency_key is None:
            out.append(None)
            continue
        key = (spec.queue, spec.idempotency_key)
        out.append(seen.get(key))
        seen.setdefault(key, i)
    return out


def node_demand(specs: Sequence[JobSpec], skip: Sequence[bool] = ()) -> dict[str, tuple[int, int]]:
    """Per node, ``(jobs, capacity)`` a batch of submits asks for: the specs assigned to it
    (``skip[i]``: spec ``i`` makes no job, its idempotency key being held) and the smallest
    ``node_capacity`` given with them."""
    demand: dict[str, tuple[int, int]] = {}
    for i, spec in enumerate(specs):
        if spec.node is None or (i < len(skip) and skip[i]):
            continue
        n, cap = demand.get(spec.node, (0, spec.node_capacity or 0))
        demand[spec.node] = (n + 1, min(cap, spec.node_capacity or 0))
    return demand


def node_refusal(node: str, assigned: int, jobs: int, capacity: int) -> NodeFullError | None:
    """Why ``jobs`` more jobs may not go to ``node``, which has ``assigned`` queued or
    running jobs (``None``: they fit in ``capacity``)."""
    if assigned + jobs <= capacity:
        return None
    return NodeFullError(node, capacity, assigned)


def reassigned(job: JobRecord) -> tuple[str, dict[str, Any]] | None:
    """A queued job of a node that is gone goes back to its queue's pool; ``None`` for a
    job that is not (any more) queued on a node: nothing to do."""
    if job.status != QUEUED or job.node is None:
        return None
    node, job.node = job.node, None
    return "reassigned", {"node": node}


def ready_order(job: JobRecord, seq: int) -> tuple[int, float, int]:
    """The claim order of queued jobs: highest ``priority`` first, then the earliest
    ``run_at`` (a stalled job keeps its own, so it keeps its place), then submit order."""
    return (-job.priority, job.run_at, seq)


def claimable(paused: bool) -> bool:
    """A paused queue (``Store.pause_queue``) hands out no job: a claim of it takes none
    and says nothing about when to ask again (a resume wakes its workers)."""
    return not paused


def queue_change(paused: bool) -> tuple[str, dict[str, Any]]:
    """The event of pausing (``True``) or resuming a queue."""
    return ("queue_paused" if paused else "queue_resumed"), {}


def claimed(
    job: JobRecord, worker_id: str, now: float, lease_s: float, node: str | None = None
) -> tuple[str, dict[str, Any]]:
    """A claim: ``running`` under a new fencing token (``runs`` + 1), one more attempt,
    leased to ``worker_id`` for ``lease_s``; an unassigned job claimed by a ``node`` is
    now that node's. (The SQL claims and the Redis claim script
    make this change in the statement that picks the jobs.)"""
    job.status = RUNNING
    job.attempt += 1
    job.runs += 1
    job.worker_id = worker_id
    job.lease_expires_at = now + lease_s
    job.started_at = now
    if job.node is None:
        job.node = node
    return "running", {"attempt": job.attempt, "worker": worker_id}


def completed(
    job: JobRecord, outputs: dict[str, Any], dead_letters: list[dict[str, Any]] | None, now: float
) -> tuple[str, dict[str, Any]]:
    """A completion by the worker that holds the job (checked with ``holds``)."""
    job.status = COMPLETED
    job.outputs = outputs
    job.dead_letters = storable_letters(dead_letters)
    job.finished_at = now
    job.lease_expires_at = None
    return "completed", {"attempt": job.attempt}


def holds(job: JobRecord | None, worker_id: str, token: int) -> bool:
    """Whether ``worker_id`` still holds ``job`` under fencing token ``token``: the check
    of every outcome (complete, fail, release) and renewal."""
    return job is not None and job.status == RUNNING and job.worker_id == worker_id and job.runs == token


def runs_under(job: JobRecord | None, token: int) -> bool:
    """Whether ``job`` runs under ``token``: the check of the writes made while it runs
    (journal appends, step rows, journal clears)."""
    return job is not None and job.status == RUNNING and job.runs == token


def lease_expired(job: JobRecord, now: float) -> bool:
    """A running job whose worker stopped renewing: the sweeper and claims take it back."""
    return job.status == RUNNING and job.lease_expires_at is not None and job.lease_expires_at < now


def in_rate_window(claimed_at: float, rate: Rate, now: float) -> bool:
    """Whether a claim made at ``claimed_at`` still counts against ``rate`` at ``now``."""
    return claimed_at + rate.per_s > now


def claim_allowance(
    limit: int,
    now: float,
    *,
    queue_concurrency: int | None = None,
    running: int = 0,
    rate: Rate | None = None,
    recent: int = 0,
    oldest: float | None = None,
) -> tuple[int, float | None]:
    """How many jobs a claim of ``limit`` may take, given the queue's ``running`` jobs
    against ``queue_concurrency`` and its ``recent`` claims in the rate window (the
    ``oldest`` of them made at ``oldest``), and how long to wait before the rate window
    lets one more through (``None``: it does not hold the claim back)."""
    allowed = limit
    wait_s: float | None = None
    if queue_concurrency is not None:
        allowed = min(allowed, queue_concurrency - running)
    if rate is not None:
        allowed = min(allowed, rate.limit - recent)
        if recent >= rate.limit and oldest is not None:
            wait_s = max(0.0, oldest + rate.per_s - now)
    return max(0, allowed), wait_s


def claim_wait_s(
    got: int, limit: int, wait_s: float | None, next_run_at: float | None, now: float
) -> float | None:
    """How long a claim that got ``got`` of ``limit`` says to wait before asking again:
    the rate window's ``wait_s``, else until the next delayed job (``next_run_at``)."""
    if got >= limit or wait_s is not None:
        return wait_s
    return None if next_run_at is None else next_run_at - now


class TakeoverTimer:
    """When a claim should look for expired leases of its queue: at most every
    ``TAKEOVER_CHECK_S`` of the store clock (per store object)."""

    def __init__(self) -> None:
        self._at = float("-inf")

    def due(self, now: float) -> bool:
        if now < self._at:
            return False
        self._at = now + TAKEOVER_CHECK_S
        return True


def may_sweep(holder: str | None, expires_at: float | None, owner: str, now: float) -> bool:
    """Whether ``owner`` may take (or keep) the sweeper lock held by ``holder`` until
    ``expires_at``: it is free, ours, or expired."""
    return holder is None or holder == owner or expires_at is None or expires_at <= now


def retention_cutoffs(retention: Retention, now: float) -> tuple[float | None, int | None, float | None]:
    """``(completed_before, keep_completed, failed_before)``: completed jobs finished
    before the first are deleted, and those beyond the newest ``keep_completed``;
    failed and cancelled jobs finished before the last."""
    return (
        None if retention.keep_completed_s is None else now - retention.keep_completed_s,
        retention.keep_completed_count,
        None if retention.keep_failed_s is None else now - retention.keep_failed_s,
    )


def expired_ids(finished: Iterable[tuple[str, str, float]], retention: Retention, now: float) -> list[str]:
    """Ids to delete among ``(id, status, finished_at)``: completed jobs older than
    ``keep_completed_s`` or beyond the newest ``keep_completed_count``; failed and
    cancelled jobs older than ``keep_failed_s`` (``retention_cutoffs``)."""
    completed_before, keep, failed_before = retention_cutoffs(retention, now)
    done: list[tuple[str, float]] = []
    gone: list[str] = []
    for job_id, status, at in finished:
        if status == COMPLETED:
            done.append((job_id, at))
        elif failed_before is not None and at < failed_before:
            gone.append(job_id)
    done.sort(key=lambda x: x[1], reverse=True)
    for i, (job_id, at) in enumerate(done):
        if (completed_before is not None and at < completed_before) or (keep is not None and i >= keep):
            gone.append(job_id)
    return gone


def after_failure(
    job: JobRecord,
    error: str,
    now: float,
    *,
    retry: bool = True,
    detail: str | None = None,
    dead_letters: list[dict[str, Any]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Fail the current attempt: back to ``queued`` after the job's backoff while attempts
    remain (and ``retry``), else ``failed``. ``detail`` (the failure's traceback) is kept
    on the job and in the event; ``dead_letters`` on a failed job. Returns the event kind
    and its data. Their text is kept as every store can hold it (``storable_text``)."""
    error = storable_text(error) or ""
    detail = storable_text(detail)
    dead_letters = storable_letters(dead_letters)
    job.error = error
    job.error_detail = detail
    job.lease_expires_at = None
    data: dict[str, Any] = {"attempt": job.attempt, "error": error}
    if detail is not None:
        data["traceback"] = detail
    if retry and job.attempt < job.max_attempts:
        delay = max(MIN_RETRY_DELAY_S, job.backoff.delay_s(job.attempt))
        job.status = QUEUED
        job.run_at = now + delay
        job.node = None  # back to the pool (``unassigned``)
        return "retrying", {**data, "delay_s": delay}
    job.status = FAILED
    job.finished_at = now
    job.dead_letters = dead_letters
    return "failed", data


def after_stall(job: JobRecord, now: float, max_stalls: int, why: str) -> tuple[str, dict[str, Any]]:
    """A running job lost its worker (a crash, a lease that expired). The crash counts as
    an attempt: the job is requeued while it has attempts left, in its place in the
    queue (``run_at`` is kept, so it runs before the jobs queued after it), else it
    fails; more than ``max_stalls`` stalls fail it too (a guard against a job that
    kills its workers)."""
    job.stalls += 1
    job.lease_expires_at = None
    worker = job.worker_id
    if job.attempt >= job.max_attempts or job.stalls > max_stalls:
        job.status = FAILED
        if job.stalls > max_stalls:
            job.error = f"stalled {job.stalls} times ({why}); max_stalls is {max_stalls}"
        else:
            job.error = (
                f"worker {worker} stopped ({why}) on the last attempt ({job.attempt} of {job.max_attempts})"
            )
        job.error_detail = None
        job.finished_at = now
        return "failed", {"attempt": job.attempt, "stalls": job.stalls, "error": job.error, "worker": worker}
    job.status = QUEUED
    job.node = None
    return "stalled", {"stalls": job.stalls, "why": why, "worker": worker, "attempt": job.attempt}


def after_release(job: JobRecord, now: float) -> tuple[str, dict[str, Any]]:
    """A worker gave a running job back (shutdown): requeued, the attempt does not count."""
    job.status = QUEUED
    job.attempt = max(0, job.attempt - 1)
    job.lease_expires_at = None
    job.run_at = now
    job.node = None
    return "released", {"worker": job.worker_id}


def cancel(job: JobRecord, now: float) -> tuple[str, dict[str, Any]]:
    if job.status not in (QUEUED, RUNNING):
        raise JobError(f"job {job.id} is {job.status}; only a queued or running job can be cancelled")
    was = job.status
    job.status = CANCELLED
    job.finished_at = now
    job.lease_expires_at = None
    return "cancelled", {"was": was}


def manual_retry(job: JobRecord, now: float, *, from_start: bool) -> tuple[str, dict[str, Any]]:
    """Requeue a failed or cancelled job, or a running one whose lease has expired, with
    its attempts and stalls reset. ``from_start`` is kept for the durable journal."""
    stalled = lease_expired(job, now)
    if job.status not in (FAILED, CANCELLED) and not stalled:
        what = "completed" if job.status == COMPLETED else job.status
        raise JobError(f"job {job.id} is {what}; only a failed, cancelled or stalled job can be retried")
    was = job.status
    job.status = QUEUED
    job.attempt = 0
    job.stalls = 0
    job.error = None
    job.error_detail = None
    job.outputs = None
    job.dead_letters = None
    job.finished_at = None
    job.lease_expires_at = None
    job.run_at = now
    job.from_start = from_start
    job.node = None
    return "retried", {"was": was, "from_start": from_start}


def interrupted_why(kind: str, data: dict[str, Any], worker: str | None) -> str:
    """Why the steps still running when a job left ``running`` (an event ``kind`` with
    its ``data``, its worker ``worker``) were interrupted: their rows' ``error``."""
    if kind == "stalled" or (kind == "failed" and "stalls" in data):
        return f"interrupted: worker {worker} stopped ({data.get('why') or data.get('error')})"
    if kind == "released":
        return f"interrupted: worker {worker} gave the job back at shutdown"
    if kind == "cancelled":
        return "interrupted: the job was cancelled"
    if kind == "completed":
        return "interrupted: the job completed while the step was running"
    return f"interrupted: the job {kind} ({data.get('error')})"


def completion_steps(
    steps: Sequence[StepRecord], job_id: str, token: int, now: float, why: str
) -> list[StepRecord]:
    """The step rows ``complete`` writes with job ``job_id``'s outcome, of the rows given:
    the job's under its run ``token``; a ``running`` one ``interrupted`` (the job ended
    without it: ``why``, at ``now``), as the job's other running rows become."""
    return [
        dataclasses.replace(s, status=INTERRUPTED, completed_at=now, error=why) if s.status == RUNNING else s
        for s in steps
        if s.job_id == job_id and s.run == token
    ]
