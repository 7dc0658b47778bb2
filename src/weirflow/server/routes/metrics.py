"""``GET /metrics``: the engine's Prometheus metrics, read at scrape time."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ...metrics import CONTENT_TYPE, EngineMetrics
from ..auth import require_read
from ..deps import Service, errors

router = APIRouter(tags=["health"], dependencies=[Depends(require_read)])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}, **errors()},
)
async def metrics(request: Request, service: Service) -> Response:
    """Prometheus text format: slot queues, job counts, handler durations, dead letters; with
    ``--registry``, the node registry's too (``weirflow_cluster_*``: Redis latency, deadline
    misses, mode switches, status, staleness)."""
    engine_metrics: EngineMetrics = request.app.state.metrics
    body = engine_metrics.render()
    registry = getattr(request.app.state, "registry", None)
    if registry is not None:
        body += registry.metrics.render()
    return Response(body, media_type=CONTENT_TYPE)
