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
    """Prometheus text format: slot queues, job counts, handler durations, dead letters."""
    engine_metrics: EngineMetrics = request.app.state.metrics
    return Response(engine_metrics.render(), media_type=CONTENT_TYPE)
