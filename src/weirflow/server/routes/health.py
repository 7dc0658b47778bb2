"""``GET /healthz`` (alive, no key needed) and ``GET /readyz`` (the engine is running)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ..auth import require_read
from ..deps import Service, errors
from ..models import Health, Readiness
from .nodes import registry_status

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process answers. Needs no API key."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses=errors(), dependencies=[Depends(require_read)])
async def readyz(service: Service, request: Request) -> dict[str, Any]:
    """The engine runs (``503`` while starting or stopping); lists jobs with full slots, and the
    node registry's status (``normal``, ``degraded``, ``recovering``, ``starting``) with ``--registry``."""
    ready = service.readiness()
    reg = getattr(request.app.state, "registry", None)
    if reg is not None:
        ready["registry"] = registry_status(reg)
    return ready
