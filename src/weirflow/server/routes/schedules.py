"""Schedules (repeatable jobs) in the server's store: ``weirflow schedules`` over HTTP.

``GET /api/store/schedules`` needs a ``read`` key, adding (``POST``) and removing
(``DELETE /api/store/schedules/{name}``) an ``admin`` key; without a store ``503``.
A bad cron expression or time zone, a flow the server does not serve or a slot it
does not have is ``422``; removing an unknown schedule ``404``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from ...durable.schedules import Schedule
from ..auth import require_admin, require_read
from ..jsonsafe import jsonable
from ..store_models import MAX_NAME, AddSchedule, StoreSchedule
from .store import StoreDep, answers

router = APIRouter(prefix="/api/store/schedules", tags=["store"])
READ = [Depends(require_read)]
ADMIN = [Depends(require_admin)]
NO_NUL = r"^[^\x00]*$"


def _view(s: Schedule) -> dict[str, Any]:
    view = s.to_dict()
    view["inputs"] = jsonable(s.inputs)
    return view


@router.get("", response_model=list[StoreSchedule], dependencies=READ, responses=answers())
async def list_schedules(
    store: StoreDep,
    queue: Annotated[str | None, Query(min_length=1, max_length=MAX_NAME, pattern=NO_NUL)] = None,
) -> list[dict[str, Any]]:
    """The store's schedules (of ``queue``), by name: ``weirflow schedules list --json``."""
    return [_view(s) for s in await store.schedules(queue)]


@router.post("", status_code=201, response_model=StoreSchedule, dependencies=ADMIN, responses=answers())
async def add_schedule(body: AddSchedule, store: StoreDep) -> dict[str, Any]:
    """Create or replace a schedule of one of the server's flows; workers of its queue fire
    its ticks, one job per tick. Re-added with the same timing it keeps its next tick."""
    return _view(await store.add_schedule(body))


@router.delete("/{name}", status_code=204, dependencies=ADMIN, responses=answers(404))
async def remove_schedule(
    name: Annotated[str, Path(min_length=1, max_length=MAX_NAME, pattern=NO_NUL)], store: StoreDep
) -> Response:
    """Delete a schedule (the jobs it already made stay); ``404`` if there is none."""
    await store.remove_schedule(name)
    return Response(status_code=204)
