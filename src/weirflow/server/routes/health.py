"""``GET /healthz`` (alive, no key needed) and ``GET /readyz`` (the engine is running, and
the durable store answers when the server has one)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..auth import require_read
from ..deps import Service, errors
from ..models import Health, Readiness
from ..store_ready import StoreReadiness
from .nodes import registry_status

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process answers. Needs no API key."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=errors(),
    dependencies=[Depends(require_read)],
)
async def readyz(service: Service, request: Request) -> Any:
    """The engine runs (``503`` while starting or stopping); lists jobs with full slots, the
    node registry's status (``normal``, ``degraded``, ``recovering``, ``starting``) with
    ``--registry`` (reported, never unready for it), and with ``--store`` whether the store
    answers: ``503`` with ``status: unready`` and the store's ``error`` when it does not
    within a second (asked at most about once a second, however often this is called)."""
    ready = service.readiness()
    reg = getattr(request.app.state, "registry", None)
    if reg is not None:
        ready["registry"] = registry_status(reg)
    store: StoreReadiness | None = getattr(request.app.state, "store_ready", None)
    if store is not None:
        ready["store"] = await store.check()
        if ready["store"]["status"] != "ok":
            ready["status"] = "unready"
            body = Readiness.model_validate(ready).model_dump(mode="json")
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    return ready
