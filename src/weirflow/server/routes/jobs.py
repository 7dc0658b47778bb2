"""Reading jobs: list, one job, its result, dead letters and queues."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from ...runtime.results import JobStatus
from .. import views
from ..auth import require_read
from ..deps import Service, errors, get_service, json_answer
from ..models import DeadLetterPage, JobInfo, JobPage, JobQueues, JobResultInfo

router = APIRouter(prefix="/api/jobs", tags=["jobs"], dependencies=[Depends(require_read)])

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, description="Items to skip.")]


@router.get("", response_model=JobPage, responses=errors())
async def list_jobs(
    service: Service,
    flow: Annotated[str | None, Query(description="Only jobs of this flow.")] = None,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Known jobs, oldest first; ``total`` counts every match."""
    page, total = service.list_jobs(flow, status, limit, offset)
    return {"items": [views.job_info(j) for j in page], "total": total, "limit": limit, "offset": offset}


@router.get("/{job_id}", response_model=JobInfo, responses=errors(404))
async def get_job(job_id: str, service: Service) -> dict[str, Any]:
    return views.job_info(service.job(job_id))


@router.get("/{job_id}/result", response_model=JobResultInfo, responses=errors(404, 409))
async def get_result(
    job_id: str,
    service: Service,
    wait_s: Annotated[
        float, Query(ge=0, allow_inf_nan=False, description="Wait up to this long for the job to finish.")
    ] = 0,
) -> dict[str, Any]:
    """The finished job's outputs, error and dead letters; ``409`` while it runs (after
    waiting up to ``wait_s``, capped by the server's ``max_wait_s``)."""
    return views.job_result(await service.result(job_id, wait_s))


@router.get("/{job_id}/dead-letters", response_model=DeadLetterPage, responses=errors(404))
async def dead_letters(
    job_id: str, service: Service, limit: Limit = 50, offset: Offset = 0
) -> dict[str, Any]:
    """Items that were dropped or failed, with their reason, oldest first (also while running)."""
    letters = service.job(job_id).dead_letters
    page = letters[offset : offset + limit]
    return {
        "items": [views.dead_letter(d) for d in page],
        "total": len(letters),
        "limit": limit,
        "offset": offset,
    }


@router.get("/{job_id}/queues", response_model=JobQueues, responses=errors(404))
async def job_queues(job_id: str, request: Request) -> Response:
    """Every slot's queue statistics now, with counts of full and near-full slots."""
    service = await get_service(request)  # (not a dependency on this hot route: see get_service)
    return json_answer(views.job_queues(service.job(job_id).queue_dicts()))
