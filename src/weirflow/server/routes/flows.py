"""``GET /api/flows``, ``/api/flows/{name}`` (the graph) and ``/api/flows/{name}/queues``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from .. import views
from ..auth import require_read
from ..deps import Service, errors
from ..models import FlowGraph, FlowQueues, FlowSummary

router = APIRouter(prefix="/api/flows", tags=["flows"], dependencies=[Depends(require_read)])


@router.get("", response_model=list[FlowSummary], responses=errors())
async def list_flows(service: Service) -> list[dict[str, Any]]:
    """Every flow this server runs."""
    return [views.flow_summary(f) for f in service.flows()]


@router.get("/{name}", response_model=FlowGraph, responses=errors(404))
async def get_flow(name: str, service: Service) -> dict[str, Any]:
    """The flow's graph: routines (slots with capacity and overflow policy, events), connections."""
    return service.flow(name).describe()


@router.get("/{name}/queues", response_model=FlowQueues, responses=errors(404))
async def flow_queues(name: str, service: Service) -> dict[str, Any]:
    """Every slot summed over the flow's unfinished jobs, with counts of full and near-full slots."""
    return service.flow_queues(name)
