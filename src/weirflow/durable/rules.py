"""The state changes every backend makes the same way, computed on a ``JobRecord``.

The SQL backends read the row inside their write transaction, apply one of these
and write the changed columns back, so the rules live in one place.
"""

from __future__ import annotations

from typing import Any

from ..errors import JobError
from .models import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING, JobRecord

# how long a retried job waits at least, so a zero backoff cannot spin a worker
MIN_RETRY_DELAY_S = 0.0


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
    and its data."""
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
    return "stalled", {"stalls": job.stalls, "why": why, "worker": worker, "attempt": job.attempt}


def after_release(job: JobRecord, now: float) -> tuple[str, dict[str, Any]]:
    """A worker gave a running job back (shutdown): requeued, the attempt does not count."""
    job.status = QUEUED
    job.attempt = max(0, job.attempt - 1)
    job.lease_expires_at = None
    job.run_at = now
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
    stalled = job.status == RUNNING and job.lease_expires_at is not None and job.lease_expires_at < now
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
