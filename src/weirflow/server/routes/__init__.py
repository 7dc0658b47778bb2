"""Route modules: each translates HTTP to ``JobService`` calls and back, nothing more.

``ROUTERS`` is what the app includes, in order; a new area adds its ``router`` here.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import (
    control,
    debug,
    events,
    flow_check,
    flows,
    health,
    jobs,
    metrics,
    nodes,
    pipelines,
    schedules,
    store,
    store_bulk,
    store_queues,
)

ROUTERS: list[APIRouter] = [
    health.router,
    flows.router,
    flow_check.router,
    jobs.router,
    control.router,
    debug.router,
    events.router,
    metrics.router,
    store.router,
    schedules.router,
    store_bulk.router,
    store_queues.router,
    nodes.router,
    *pipelines.routers,
]
