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

# The job routes first: the app matches a request against each router in turn, and
# starting jobs and reading their queues are the hot requests (no path of the others
# can match theirs: /api/jobs is theirs alone, so the order changes no answer). The
# start of a job first of all, in a router of its own (GET /api/jobs is another method).
ROUTERS: list[APIRouter] = [
    control.start_router,
    jobs.router,
    control.router,
    health.router,
    flows.router,
    flow_check.router,
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
