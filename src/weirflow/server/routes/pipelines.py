"""Supervised pipelines over HTTP: ``/api/pipelines`` (``weirflow.supervise``).

The app's ``Supervisor`` (``app.state.supervisor``) does the work; these routes
translate. Its typed errors answer with their status and a message:
``PipelineNotFound`` 404, ``InvalidCommand`` 422, ``PipelineStateError`` 409,
``CommandTimeout`` 504 (``server.errors``); a slot that stayed full is ``429``
with ``accepted`` and ``Retry-After``, as for jobs, and so is a full send window
(``SendWindowFullError``: ``capacity`` is then the window's ``unacked_capacity``, with
``unacked``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from ...errors import (
    InvalidCommand,
    PipelineStateError,
    SendWindowFullError,
    SlotFullError,
    SuperviseError,
)
from ...supervise import Supervisor
from ..auth import require_admin, require_admin_change, require_read
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


@read.get("/{pipeline_id}/results", response_model=PipelineResults, responses=errors(403, 404, 422))
async def pipeline_results(
    pipeline_id: str,
    request: Request,
    sup: Sup,
    max_items: Annotated[int, Query(alias="max", ge=1, le=10_000)] = 100,
    wait_s: Annotated[float, Query(ge=0, le=30, allow_inf_nan=False)] = 0.0,
    peek: bool = False,
    before: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """Consume up to ``max`` outputs, oldest first, waiting up to ``wait_s`` for the first
    (an ``admin`` call: consuming is a write, it changes the pipeline). ``peek=true``
    returns them without consuming, for any key.

    The wait takes nothing: items are taken only once it is over and the client is still
    connected, so a client that goes away while it waits (a Ctrl-C, a client timeout, a
    proxy's cut-off) leaves every output in the buffer for the next call.

    ``offset`` is the position of the first item answered (outputs are numbered from 0).
    ``before=N`` consumes only the outputs below position N, with no wait: a client that
    peeked and handled n items confirms them with ``before=offset+n``, and a repeated
    confirmation takes nothing more — nothing is lost to an answer that does not arrive."""
    if peek and before is not None:
        raise InvalidCommand("peek=true takes nothing; before=N consumes: give one of them")
    if not peek:
        await require_admin_change(request)
    sup.get(pipeline_id)  # 404 before waiting
    if before is not None:
        offset = sup.results_offset(pipeline_id)
        items = await sup.results(pipeline_id, max_items=max_items, before=before)
        return {"items": items, "remaining": sup.remaining(pipeline_id), "offset": offset}
    if not await _waited_for(request, sup.wait_results(pipeline_id, wait_s=wait_s)):
        # nobody reads this
        return {
            "items": [],
            "remaining": sup.remaining(pipeline_id),
            "offset": sup.results_offset(pipeline_id),
        }
    offset = sup.results_offset(pipeline_id)
    if peek:
        items = [item for _, item in sup.peek_results(pipeline_id, max_items=max_items)]
    else:
        items = await sup.results(pipeline_id, max_items=max_items)
    return {"items": items, "remaining": sup.remaining(pipeline_id), "offset": offset}


@read.get("/{pipeline_id}/dead-letters", response_model=PipelineDeadLetters, responses=errors(404))
async def pipeline_dead_letters(pipeline_id: str, sup: Sup) -> dict[str, Any]:
    """Items the pipeline did not process (its child ended before finishing them, or its
    job dead-lettered them), oldest first; not consumed."""
    letters = sup.dead_letters(pipeline_id)
    info = sup.get(pipeline_id)
    items = [jsonable(d.to_dict()) for d in letters]
    return {"items": items, "total": info.dead_letters, "dropped": info.dead_letters - len(letters)}


async def _waited_for(request: Request, wait: Awaitable[Any]) -> bool:
    """Run ``wait`` until it ends (``True``) or the client disconnects first (``False``).

    Starlette does not cancel a route whose client went away, so this listens for the
    ``http.disconnect`` message itself (the request has no body: the first message is its
    empty ``http.request``, the next one comes only when the connection closes)."""
    waiting = asyncio.ensure_future(wait)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, gone):
            task.cancel()
        await asyncio.gather(waiting, gone, return_exceptions=True)
    if gone.done() and not gone.cancelled():
        return False
    waiting.result()  # its error (a pipeline forgotten meanwhile: 404)
    return True


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


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
        except SendWindowFullError as e:
            # the limit hit is the pipeline's send window (``unacked_capacity``), not the
            # slot's: named as such; a SlotFullError too, for the same retry loop
            raise SlotStayedFullError(
                f"{e}; {accepted} of {len(body.items)} item(s) accepted, the rest were not",
                headers={"Retry-After": "1"},
                accepted=accepted,
                slot=body.slot,
                capacity=e.capacity,
                unacked=e.unacked,
                retry_after_s=1,
            ) from e
        except PipelineStateError as e:
            if e.state == "full":
                # named SlotFullError (its cause), as a job's full slot is: one retry loop
                # (``except wf.SlotFullError``) serves both
                capacity = _capacity(sup, pipeline_id, body.slot)
                raise SlotStayedFullError(
                    f"{e}; {accepted} of {len(body.items)} item(s) accepted, the rest were not",
                    headers={"Retry-After": "1"},
                    accepted=accepted,
                    slot=body.slot,
                    capacity=capacity,
                    retry_after_s=1,
                ) from SlotFullError(body.slot, capacity or 0)
            raise _with_accepted(e, accepted) from None
        except SuperviseError as e:
            raise _with_accepted(e, accepted) from None
    return {"accepted": len(body.items)}


def _capacity(sup: Supervisor, pipeline_id: str, slot: str) -> int | None:
    """The slot's capacity as the pipeline's last health check saw it (``None``: not yet)."""
    stats = sup.get(pipeline_id).queues.get(slot)
    capacity = stats.get("capacity") if isinstance(stats, dict) else None
    return capacity if isinstance(capacity, int) else None


def _with_accepted(error: SuperviseError, accepted: int) -> SuperviseError:
    error.accepted = accepted  # type: ignore[attr-defined]  # rendered by server.errors
    return error


@admin.delete("/{pipeline_id}", response_model=PipelineOut, responses=errors(404, 409))
async def stop_pipeline(
    pipeline_id: str,
    sup: Sup,
    grace_s: Annotated[float | None, Query(ge=0, le=3600, allow_inf_nan=False)] = None,
    forget: bool = False,
) -> dict[str, Any]:
    """Drain, SIGTERM, then SIGKILL after the grace period; the pipeline is ``stopped``.

    ``forget=true`` removes a finished (``stopped`` or ``failed``) pipeline instead, with
    what is left in its results buffer, and answers it one last time; ``409`` while it is
    not finished (stop it first)."""
    if forget:
        return sup.forget(pipeline_id).to_dict()
    return (await sup.stop(pipeline_id, grace_s=grace_s)).to_dict()


routers = [read, admin]
