"""Durable jobs in bulk: a summary by status and queue, retrying every failed job of a
queue, cleaning finished jobs older than an age (what Bull Board users reach for); and
one job's stored row.

Reading needs a ``read`` key, changing ``admin``; without a store ``503`` (``store.get_store``).
Not here yet, because the store cannot do it: pausing a queue (claims would have to skip it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from ...durable.models import Retention, unstorable
from ...errors import StoreError, StoreRefusedError
from ..auth import require_admin, require_read
from ..durable_jobs import record_view
from ..errors import ConflictError, NotFoundError, StoreRefusedAnswerError, UnavailableError
from ..models import RequestBody
from ..store_models import MAX_DELAY_S, MAX_NAME
from .store import StoreDep, answers

router = APIRouter(prefix="/api/store", tags=["store"])
READ = [Depends(require_read)]
ADMIN = [Depends(require_admin)]

#: jobs a summary or a bulk retry looks at, at most (newest first)
MAX_BULK_JOBS = 10_000
PAGE = 1000
#: the window of ``last_hour`` in the summary
RECENT_S = 3600.0
STATUSES = ("queued", "running", "completed", "failed", "cancelled")

T = TypeVar("T")
QueueName = Annotated[str, Path(min_length=1, max_length=MAX_NAME, pattern=r"^[^\x00]*$")]


class QueueSummary(BaseModel):
    counts: dict[str, int] = Field(description="Jobs of the queue by status.")
    failure_rate: float | None = Field(description="failed / (completed + failed); null before any finished.")
    last_hour: dict[str, int] = Field(description="Attempts of the last hour: failed and finished.")


class StoreSummary(BaseModel):
    by_status: dict[str, int]
    queues: dict[str, QueueSummary]
    counted: int = Field(description="Jobs counted (the newest, at most max_jobs).")
    truncated: bool = Field(description="More jobs exist than were counted.")


class RetriedFailed(BaseModel):
    retried: list[str]
    refused: list[dict[str, str]] = Field(description="Jobs that could not be retried: id and error.")


class CleanJobs(RequestBody):
    status: Literal["completed", "failed"] = Field(description="completed, or failed (failed and cancelled).")
    older_than_s: float = Field(
        ge=0, le=MAX_DELAY_S, allow_inf_nan=False, description="Only jobs that finished longer ago than this."
    )


class Cleaned(BaseModel):
    deleted: int = Field(description="Jobs deleted, with their steps, events and journals.")


async def _store(call: Awaitable[T]) -> T:
    try:
        return await call
    except StoreRefusedError as e:  # (as ``StoreService._call``: the request's fault, 422)
        raise StoreRefusedAnswerError(f"the store refused the write: {e}") from e
    except StoreError as e:
        raise UnavailableError(f"the store failed: {e}") from None


@router.get("/summary", response_model=StoreSummary, dependencies=READ, responses=answers())
async def summary(
    store: StoreDep,
    max_jobs: Annotated[
        int, Query(ge=1, le=MAX_BULK_JOBS, description="Count at most this many jobs.")
    ] = MAX_BULK_JOBS,
) -> dict[str, Any]:
    """Jobs by status and, per queue, by status with the failure rate (the newest
    ``max_jobs`` jobs) and the failed and finished attempts of the last hour."""
    by_status = dict.fromkeys(STATUSES, 0)
    queues: dict[str, dict[str, int]] = {}
    counted, offset, more = 0, 0, True
    while more and counted < max_jobs:
        page, more = await store.list_jobs(None, None, None, min(PAGE, max_jobs - counted), offset)
        offset += len(page)
        for record in page:
            counted += 1
            by_status[record.status] = by_status.get(record.status, 0) + 1
            counts = queues.setdefault(record.queue, dict.fromkeys(STATUSES, 0))
            counts[record.status] = counts.get(record.status, 0) + 1
        if not page:
            break
    since = time.time() - RECENT_S
    out: dict[str, Any] = {}
    for queue, counts in sorted(queues.items()):
        failed, finished = await _store(store.store.finished_counts(queue, since))
        done = counts["completed"] + counts["failed"]
        out[queue] = {
            "counts": counts,
            "failure_rate": counts["failed"] / done if done else None,
            "last_hour": {"failed": failed, "finished": finished},
        }
    return {"by_status": by_status, "queues": out, "counted": counted, "truncated": more}


@router.post(
    "/queues/{queue}/retry-failed", response_model=RetriedFailed, dependencies=ADMIN, responses=answers()
)
async def retry_failed(queue: QueueName, store: StoreDep) -> dict[str, Any]:
    """Queue every failed job of ``queue`` again (up to 10,000, newest first), each resuming
    from its last completed step; ``refused`` lists those that changed state meanwhile."""
    ids: list[str] = []
    offset, more = 0, True
    while more and len(ids) < MAX_BULK_JOBS:
        page, more = await store.list_jobs(queue, "failed", None, PAGE, offset)
        ids.extend(r.id for r in page)
        offset += len(page)
        if not page:
            break
    retried: list[str] = []
    refused: list[dict[str, str]] = []
    for job_id in ids[:MAX_BULK_JOBS]:
        try:
            await store.retry(job_id, False)
        except (ConflictError, NotFoundError, StoreRefusedAnswerError) as e:  # the others go on
            refused.append({"id": job_id, "error": e.detail})
        else:
            retried.append(job_id)
    return {"retried": retried, "refused": refused}


@router.get("/jobs/{job_id}/record", dependencies=READ, responses=answers(404))
async def job_record(job_id: str, store: StoreDep) -> dict[str, Any]:
    """The job's stored row as ``weirflow jobs list --json`` prints it: queue, attempts,
    priority, times, inputs, outputs (what ``GET /api/store/jobs/{id}`` leaves out)."""
    record = await _store(store.store.get(job_id)) if unstorable(job_id) is None else None
    if record is None:
        raise NotFoundError(f"no job {job_id!r} in the store")
    return record_view(record)


@router.post("/clean", response_model=Cleaned, dependencies=ADMIN, responses=answers())
async def clean(body: CleanJobs, store: StoreDep) -> dict[str, Any]:
    """Delete the completed (or failed and cancelled) jobs of every queue that finished
    more than ``older_than_s`` ago, as a sweep's retention would, now."""
    if body.status == "completed":
        retention = Retention(keep_completed_s=body.older_than_s)
    else:
        retention = Retention(keep_failed_s=body.older_than_s)
    return {"deleted": await _store(store.store.clean(retention))}
