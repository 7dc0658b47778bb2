"""``GET /metrics``: the engine's Prometheus metrics, and with a store its durable queues'
(``weirflow.durable.metrics``), read at scrape time."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from ...durable.metrics import QueueMetrics
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
    misses, mode switches, status, staleness); with a store, durable queues' jobs by status,
    claim latency, run times and attempts (``weirflow_queue_*``)."""
    engine_metrics: EngineMetrics = request.app.state.metrics
    body = engine_metrics.render()
    registry = getattr(request.app.state, "registry", None)
    if registry is not None:
        body += registry.metrics.render()
    queue_metrics: QueueMetrics | None = getattr(request.app.state, "queue_metrics", None)
    if queue_metrics is not None:
        body += await queue_metrics.render()
    return Response(body, media_type=CONTENT_TYPE)
