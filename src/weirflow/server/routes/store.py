"""Durable jobs in the server's store (``--store`` / ``WEIRFLOW_STORE``): submit, list, show,
steps, events, retry, cancel — ``weirflow jobs`` over HTTP.

Reading (``GET``) needs a ``read`` key, everything else ``admin``. Without a store
every route answers ``503`` saying so. The logic is in ``durable_jobs.StoreService``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from ..auth import require_admin, require_read
from ..deps import errors
from ..durable_jobs import StoreService, info_view, record_view
from ..errors import UnavailableError
from ..store_models import (
    MAX_NAME,
    RetryStoreJob,
    StoreEvent,
    StoreJob,
    StoreJobIds,
    StoreJobPage,
    StoreStatus,
    StoreStep,
    SubmitStoreJob,
    SubmitStoreJobs,
)

router = APIRouter(prefix="/api/store/jobs", tags=["store"])
READ = [Depends(require_read)]
ADMIN = [Depends(require_admin)]
MAX_OFFSET = 100_000


def get_store(request: Request) -> StoreService:
    """The app's store service; ``503`` without a store or while the server is not running."""
    service: StoreService | None = getattr(request.app.state, "store_service", None)
    if service is None:
        if request.app.state.settings.store is None:
            raise UnavailableError(
                "no store configured: start the server with --store URL (or WEIRFLOW_STORE), "
                "e.g. sqlite:///weirflow.db"
            )
        raise UnavailableError("the store is not open")
    return service


StoreDep = Annotated[StoreService, Depends(get_store)]


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``deps.errors`` with ``503`` described for these routes."""
    out = errors(*codes)
    out[503] = {**out[503], "description": "No store configured, or the store failed"}
    return out


Text = Annotated[str | None, Query(min_length=1, max_length=MAX_NAME, pattern=r"^[^\x00]*$")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StoreJob,
    dependencies=ADMIN,
    responses={
        200: {"model": StoreJob, "description": "An earlier submit with this idempotency key: its job"},
        **answers(),
    },
)
async def submit_job(body: SubmitStoreJob, store: StoreDep, response: Response) -> dict[str, Any]:
    """Queue a durable job of one of the server's flows; a worker (``weirflow worker``) runs it.
    The same ``idempotency_key`` (per queue) again answers ``200`` with the first job."""
    info, created = await store.submit(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return info_view(info)


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=StoreJobIds,
    dependencies=ADMIN,
    responses={
        200: {"model": StoreJobIds, "description": "Every job was there already (idempotency keys)"},
        **answers(),
    },
)
async def submit_jobs(body: SubmitStoreJobs, store: StoreDep, response: Response) -> dict[str, Any]:
    """Queue up to 1000 durable jobs (``MAX_BATCH``) in one transaction: all of them, or none when one
    is refused (``422`` naming it, ``jobs.N....``). Ids come back in the order given; a job
    whose ``idempotency_key`` (per queue) is held already gets that job's id and
    ``created: false``. ``201`` when the call made at least one job, else ``200``."""
    done = await store.submit_many(body)
    if not any(created for _, created in done):
        response.status_code = status.HTTP_200_OK
    return {"ids": [job_id for job_id, _ in done], "created": [created for _, created in done]}


@router.get("", response_model=StoreJobPage, dependencies=READ, responses=answers())
async def list_jobs(
    store: StoreDep,
    queue: Annotated[Text, Query(description="Only jobs of this queue.")] = None,
    status: Annotated[StoreStatus | None, Query(description="Only jobs in this status.")] = None,
    flow: Annotated[Text, Query(description="Only jobs of this flow.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Jobs to skip.")] = 0,
) -> dict[str, Any]:
    """Jobs in the store, newest first, as ``weirflow jobs list --json`` prints them."""
    page, more = await store.list_jobs(queue, status, flow, limit, offset)
    return {
        "items": [record_view(r) for r in page],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


@router.get("/{job_id}", response_model=StoreJob, dependencies=READ, responses=answers(404))
async def get_job(job_id: str, store: StoreDep) -> dict[str, Any]:
    """Status, attempt, error (and its traceback), steps, outputs and dead letters:
    ``weirflow jobs show --json``."""
    return info_view(await store.job(job_id))


@router.get("/{job_id}/steps", response_model=list[StoreStep], dependencies=READ, responses=answers(404))
async def job_steps(job_id: str, store: StoreDep) -> list[dict[str, Any]]:
    """One row per handler call, in start order, with progress: ``weirflow jobs steps --json``."""
    return [s.to_dict() for s in await store.steps(job_id)]


@router.get("/{job_id}/events", response_model=list[StoreEvent], dependencies=READ, responses=answers(404))
async def job_events(
    job_id: str,
    store: StoreDep,
    kind: Annotated[Text, Query(description="Only events of this kind (e.g. retrying).")] = None,
    since: Annotated[
        float | None, Query(allow_inf_nan=False, description="Only events at or after this Unix time.")
    ] = None,
) -> list[dict[str, Any]]:
    """The job's state changes, oldest first."""
    return [
        {"id": e.id, "job_id": e.job_id, "queue": e.queue, "kind": e.kind, "at": e.at, "data": e.data}
        for e in await store.events(job_id, kind, since)
    ]


@router.post("/{job_id}/retry", response_model=StoreJob, dependencies=ADMIN, responses=answers(404, 409))
async def retry_job(job_id: str, store: StoreDep, body: RetryStoreJob | None = None) -> dict[str, Any]:
    """Queue a failed, cancelled or stalled job again with fresh attempts, resuming from its
    last completed step (or from the start); ``409`` for a job in another state."""
    from_start = body.from_start if body is not None else False
    return info_view(await store.retry(job_id, from_start))


@router.post("/{job_id}/cancel", response_model=StoreJob, dependencies=ADMIN, responses=answers(404, 409))
async def cancel_job(job_id: str, store: StoreDep) -> dict[str, Any]:
    """Cancel a queued or running job (its worker stops it at the next heartbeat); ``409``
    for a finished job."""
    return info_view(await store.cancel(job_id))
