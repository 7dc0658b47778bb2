"""The debugger: breakpoints of a job, where it stopped, and what to do with the held item.

Reading (``GET``) needs a ``read`` key, everything else ``admin``. A job's debug
session is created on first use. The business logic is in ``debugging.DebugService``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from .. import views
from ..auth import require_admin, require_read
from ..debug_models import (
    BadCondition,
    BatchCreated,
    BatchRemoved,
    BreakpointBatch,
    BreakpointChange,
    BreakpointIds,
    BreakpointInfo,
    DebugView,
    DropItem,
    Evaluated,
    Expression,
    Location,
    NewBreakpoint,
    NewItem,
    RoutineState,
    StateChange,
)
from ..debugging import SHOWN_ITEMS, DebugService
from ..deps import Service, errors
from ..models import ResumedJob

router = APIRouter(prefix="/api/jobs", tags=["debug"])
READ = [Depends(require_read)]
ADMIN = [Depends(require_admin)]


def get_debug(request: Request, service: Service) -> DebugService:
    """The app's debug service (``503``, through ``Service``, while the engine is not running)."""
    debug: DebugService = request.app.state.debug
    return debug


Debug = Annotated[DebugService, Depends(get_debug)]
WaitS = Annotated[
    float,
    Query(
        ge=0,
        allow_inf_nan=False,
        description="Wait up to this long for an item to be held (capped by the server's max_wait_s).",
    ),
]


def _answers(*codes: int, condition: bool = False) -> dict[int | str, dict[str, Any]]:
    out = errors(*codes)
    if condition:
        out[422] = {"model": BadCondition, "description": "Invalid request or condition (with line, column)"}
    return out


@router.post(
    "/{job_id}/breakpoints",
    status_code=status.HTTP_201_CREATED,
    response_model=BreakpointInfo,
    responses=_answers(404, 409, condition=True),
    dependencies=ADMIN,
)
async def add_breakpoint(job_id: str, body: NewBreakpoint, debug: Debug) -> dict[str, Any]:
    """Add a breakpoint; its condition is compiled now (``422`` with line and column if bad)."""
    return debug.add(job_id, body)


@router.get(
    "/{job_id}/breakpoints", response_model=list[BreakpointInfo], responses=errors(404), dependencies=READ
)
async def list_breakpoints(job_id: str, debug: Debug) -> list[dict[str, Any]]:
    return debug.breakpoints(job_id)


@router.post(
    "/{job_id}/breakpoints/batch", response_model=BatchCreated, responses=errors(404, 409), dependencies=ADMIN
)
async def add_breakpoints(job_id: str, body: BreakpointBatch, debug: Debug) -> dict[str, Any]:
    """Add many; each that fails is listed in ``failed`` with its index and reason, the others are added."""
    return debug.add_many(job_id, body.breakpoints)


@router.post(
    "/{job_id}/breakpoints/batch-delete",
    response_model=BatchRemoved,
    responses=errors(404, 409),
    dependencies=ADMIN,
)
async def remove_breakpoints(job_id: str, body: BreakpointIds, debug: Debug) -> dict[str, Any]:
    """Remove many; unknown ids are listed in ``failed`` with their index."""
    return debug.remove_many(job_id, body.ids)


@router.patch(
    "/{job_id}/breakpoints/{bp_id}",
    response_model=BreakpointInfo,
    responses=_answers(404, 409, condition=True),
    dependencies=ADMIN,
)
async def change_breakpoint(job_id: str, bp_id: str, body: BreakpointChange, debug: Debug) -> dict[str, Any]:
    """Enable or disable it, change its condition (``""`` removes it) or ``once``."""
    return debug.update(job_id, bp_id, body.enabled, body.condition, body.once)


@router.delete(
    "/{job_id}/breakpoints/{bp_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(404, 409),
    dependencies=ADMIN,
)
async def remove_breakpoint(job_id: str, bp_id: str, debug: Debug) -> Response:
    debug.remove(job_id, bp_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{job_id}/debug", response_model=DebugView, responses=errors(404), dependencies=READ)
async def inspect(
    job_id: str,
    debug: Debug,
    slot: Annotated[str | None, Query(description="Only this slot's queued items.")] = None,
    limit: Annotated[int, Query(ge=0, le=1000, description="Queued items shown per slot.")] = SHOWN_ITEMS,
    wait_s: WaitS = 0,
) -> dict[str, Any]:
    """Where the job stopped (the held item), that routine's state, every slot's stats and
    the first ``limit`` queued items; with ``wait_s``, first wait for a hit (or the job's end)."""
    return await debug.view(job_id, slot, limit, wait_s)


@router.post("/{job_id}/debug/step", response_model=DebugView, responses=errors(404, 409), dependencies=ADMIN)
async def step(job_id: str, debug: Debug, wait_s: WaitS = 0) -> dict[str, Any]:
    """Let the held item go; stop at the next hook point of the same routine (the job stays
    paused), or where the step cannot go on (location kind ``blocked``, with the slot and a
    ``reason``, or ``idle``). With ``wait_s``, answer once it stopped."""
    return await debug.step(job_id, False, wait_s)


@router.post(
    "/{job_id}/debug/step-into", response_model=DebugView, responses=errors(404, 409), dependencies=ADMIN
)
async def step_into(job_id: str, debug: Debug, wait_s: WaitS = 0) -> dict[str, Any]:
    """Let the held item go; stop when what its routine emits next arrives at a slot."""
    return await debug.step(job_id, True, wait_s)


@router.post(
    "/{job_id}/debug/resume", response_model=ResumedJob, responses=errors(404, 409), dependencies=ADMIN
)
async def resume(job_id: str, debug: Debug) -> dict[str, Any]:
    """Release every held item and continue; ``warnings`` name every full or near-full slot."""
    job, report = await debug.resume(job_id)
    return {**views.job_info(job), "warnings": report.warnings, "paused_s": report.paused_s}


@router.post(
    "/{job_id}/debug/eval",
    response_model=Evaluated,
    responses=_answers(404, 409, condition=True),
    dependencies=ADMIN,
)
async def evaluate(job_id: str, body: Expression, debug: Debug) -> dict[str, Any]:
    """Evaluate CEL at the current location (``item``, ``state``... of the held item)."""
    return {"value": debug.evaluate(job_id, body.expr)}


@router.post(
    "/{job_id}/debug/set-item", response_model=Location, responses=errors(404, 409), dependencies=ADMIN
)
async def set_item(job_id: str, body: NewItem, debug: Debug) -> dict[str, Any]:
    """Replace the held item; answers the location with the new item (``409`` if nothing is held)."""
    return debug.set_item(job_id, body.item)


@router.post(
    "/{job_id}/debug/drop-item", response_model=DebugView, responses=errors(404, 409), dependencies=ADMIN
)
async def drop_item(job_id: str, body: DropItem, debug: Debug) -> dict[str, Any]:
    """Dead-letter the held item with reason ``debugger:<reason>``; the job stays paused."""
    return debug.drop_item(job_id, body.reason)


@router.post(
    "/{job_id}/debug/set-state", response_model=RoutineState, responses=errors(404, 409), dependencies=ADMIN
)
async def set_state(job_id: str, body: StateChange, debug: Debug) -> dict[str, Any]:
    """Set ``ctx.state[key]`` of a routine (default: the held item's)."""
    return debug.set_state(job_id, body.key, body.value, body.routine)
