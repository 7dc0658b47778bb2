"""Changing jobs (admin keys): start, send input, close, pause, resume, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response, status

from .. import views
from ..auth import require_admin
from ..deps import Service, errors, get_service, json_answer
from ..direct_route import DirectRoute
from ..models import InputAccepted, InputRefused, JobInfo, PauseJob, ResumedJob, SendItems, StartJob

router = APIRouter(prefix="/api/jobs", tags=["jobs"], dependencies=[Depends(require_admin)])
#: ``POST /api/jobs`` alone, matched before any other router (``routes.ROUTERS``): FastAPI
#: looks at every route of each router it tries, and this is the hottest request
start_router = APIRouter(prefix="/api/jobs", tags=["jobs"], dependencies=[Depends(require_admin)])


async def start_job(body: StartJob, request: Request) -> Response:
    """Start a job; ``inputs`` are fed in the background. With ``keep_open`` send more with /input."""
    service = await get_service(request)  # (not a dependency on this hot route: see get_service)
    job = await service.start(body.flow, body.inputs, body.keep_open)
    return json_answer(views.job_info(job), status.HTTP_201_CREATED)


start_router.add_api_route(  # a ``DirectRoute``: a well-formed start skips FastAPI's handling
    "",
    start_job,
    methods=["POST"],
    status_code=status.HTTP_201_CREATED,
    response_model=JobInfo,
    responses=errors(404, 409),
    route_class_override=DirectRoute,
)


@router.post(
    "/{job_id}/input",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InputAccepted,
    responses={
        **errors(404),
        409: {"model": InputRefused, "description": "The job's input is closed or it has finished"},
        429: {"model": InputRefused, "description": "The slot stayed full; see Retry-After"},
    },
)
async def send_input(job_id: str, body: SendItems, service: Service) -> dict[str, Any]:
    """Send items in order, waiting for room up to ``timeout_s`` in total. When the slot stays
    full, ``429`` says how many items were accepted; the others were not (send them again)."""
    timeout_s = body.timeout_s
    if "timeout_s" not in body.model_fields_set:  # the default, on a server whose cap is lower
        timeout_s = min(timeout_s, service.settings.max_send_timeout_s)
    return {"accepted": await service.send(job_id, body.slot, body.items, timeout_s)}


@router.post("/{job_id}/close", response_model=JobInfo, responses=errors(404, 409))
async def close_input(job_id: str, service: Service) -> dict[str, Any]:
    """No more input; the job completes once everything queued is processed. ``409`` for a
    job that has finished."""
    return views.job_info(await service.close_input(job_id))


@router.post("/{job_id}/pause", response_model=JobInfo, responses=errors(404, 409))
async def pause_job(job_id: str, service: Service, body: PauseJob | None = None) -> dict[str, Any]:
    """Stop starting handler calls; sends keep queueing until a slot is full."""
    reason = body.reason if body is not None else "manual"
    return views.job_info(await service.pause(job_id, reason))


@router.post("/{job_id}/resume", response_model=ResumedJob, responses=errors(404, 409))
async def resume_job(job_id: str, service: Service) -> dict[str, Any]:
    """Continue a paused job; ``warnings`` name every slot that was full or near full."""
    job, report = await service.resume(job_id)
    return {**views.job_info(job), "warnings": report.warnings, "paused_s": report.paused_s}


@router.post("/{job_id}/cancel", response_model=JobInfo, responses=errors(404, 409))
async def cancel_job(job_id: str, service: Service) -> dict[str, Any]:
    """Stop the job; queued and in-flight items are dead-lettered as ``job_cancelled``.
    ``409`` for a job that has finished (as for pause, resume, close and the durable cancel)."""
    return views.job_info(await service.cancel(job_id))
