"""Supervised pipelines over HTTP: ``/api/pipelines`` (``weirflow.supervise``).

The app's ``Supervisor`` (``app.state.supervisor``) does the work; these routes
translate. Its typed errors answer with their status and a message:
``PipelineNotFound`` 404, ``InvalidCommand`` 422, ``PipelineStateError`` 409,
``CommandTimeout`` 504 (``server.errors``); a slot that stayed full is ``429``
with ``accepted`` and ``Retry-After``, as for jobs.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from ...errors import PipelineStateError, SuperviseError
from ...supervise import Supervisor
from ..auth import require_admin, require_read
from ..deps import errors
from ..errors import SlotStayedFullError, UnavailableError
from ..jsonsafe import jsonable
from ..pipeline_models import (
    Accepted,
    PipelineDeadLetters,
    PipelineInput,
    PipelineOut,
    PipelineResults,
    StartPipeline,
)


async def get_supervisor(request: Request) -> Supervisor:
    """The app's supervisor; ``503`` outside its lifespan."""
    supervisor: Supervisor | None = getattr(request.app.state, "supervisor", None)
    if supervisor is None:
        raise UnavailableError("the supervisor is not running")
    return supervisor


Sup = Annotated[Supervisor, Depends(get_supervisor)]


read = APIRouter(prefix="/api/pipelines", tags=["pipelines"], dependencies=[Depends(require_read)])
admin = APIRouter(prefix="/api/pipelines", tags=["pipelines"], dependencies=[Depends(require_admin)])


@read.get("", response_model=list[PipelineOut], responses=errors())
async def list_pipelines(sup: Sup) -> list[dict[str, Any]]:
    """Every pipeline (stopped and failed ones too), oldest first."""
    return [p.to_dict() for p in sup.pipelines()]


@read.get("/{pipeline_id}", response_model=PipelineOut, responses=errors(404))
async def get_pipeline(pipeline_id: str, sup: Sup) -> dict[str, Any]:
    return sup.get(pipeline_id).to_dict()


@read.get("/{pipeline_id}/results", response_model=PipelineResults, responses=errors(404))
async def pipeline_results(
    pipeline_id: str,
    sup: Sup,
    max_items: Annotated[int, Query(alias="max", ge=1, le=10_000)] = 100,
    wait_s: Annotated[float, Query(ge=0, le=30, allow_inf_nan=False)] = 0.0,
) -> dict[str, Any]:
    """Consume up to ``max`` outputs, oldest first, waiting up to ``wait_s`` for the first."""
    items = await sup.results(pipeline_id, max_items=max_items, wait_s=wait_s)
    return {"items": items, "remaining": sup.remaining(pipeline_id)}


@read.get("/{pipeline_id}/dead-letters", response_model=PipelineDeadLetters, responses=errors(404))
async def pipeline_dead_letters(pipeline_id: str, sup: Sup) -> dict[str, Any]:
    """Items the pipeline did not process (its child ended before finishing them, or its
    job dead-lettered them), oldest first; not consumed."""
    letters = sup.dead_letters(pipeline_id)
    info = sup.get(pipeline_id)
    items = [jsonable(d.to_dict()) for d in letters]
    return {"items": items, "total": info.dead_letters, "dropped": info.dead_letters - len(letters)}


@admin.post(
    "", status_code=status.HTTP_201_CREATED, response_model=PipelineOut, responses=errors(409, 422, 504)
)
async def start_pipeline(body: StartPipeline, sup: Sup) -> dict[str, Any]:
    """Start a pipeline: a job of ``flow`` in a supervised child process."""
    info = await sup.start(
        body.flow, body.inputs, name=body.name, restart=body.restart.value, max_rss_mb=body.max_rss_mb
    )
    return info.to_dict()


@admin.post("/{pipeline_id}/pause", response_model=PipelineOut, responses=errors(404, 409, 504))
async def pause_pipeline(pipeline_id: str, sup: Sup) -> dict[str, Any]:
    return (await sup.pause(pipeline_id)).to_dict()


@admin.post("/{pipeline_id}/resume", response_model=PipelineOut, responses=errors(404, 409, 504))
async def resume_pipeline(pipeline_id: str, sup: Sup) -> dict[str, Any]:
    return (await sup.resume(pipeline_id)).to_dict()


@admin.post(
    "/{pipeline_id}/input",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={**errors(404, 409, 422, 504), 429: {"model": Accepted, "description": "The slot stayed full"}},
)
async def pipeline_input(pipeline_id: str, body: PipelineInput, sup: Sup) -> dict[str, Any]:
    """Send items in order, waiting for room up to ``timeout_s`` in total."""
    deadline = time.monotonic() + body.timeout_s
    for accepted, item in enumerate(body.items):
        try:
            await sup.send(pipeline_id, body.slot, item, timeout_s=max(0.0, deadline - time.monotonic()))
        except PipelineStateError as e:
            if e.state == "full":
                raise SlotStayedFullError(
                    f"{e}; {accepted} of {len(body.items)} item(s) accepted, the rest were not",
                    headers={"Retry-After": "1"},
                    accepted=accepted,
                ) from None
            raise _with_accepted(e, accepted) from None
        except SuperviseError as e:
            raise _with_accepted(e, accepted) from None
    return {"accepted": len(body.items)}


def _with_accepted(error: SuperviseError, accepted: int) -> SuperviseError:
    error.accepted = accepted  # type: ignore[attr-defined]  # rendered by server.errors
    return error


@admin.delete("/{pipeline_id}", response_model=PipelineOut, responses=errors(404))
async def stop_pipeline(
    pipeline_id: str,
    sup: Sup,
    grace_s: Annotated[float | None, Query(ge=0, le=3600, allow_inf_nan=False)] = None,
) -> dict[str, Any]:
    """Drain, SIGTERM, then SIGKILL after the grace period; the pipeline is ``stopped``."""
    return (await sup.stop(pipeline_id, grace_s=grace_s)).to_dict()


routers = [read, admin]
