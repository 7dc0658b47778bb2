"""Route modules: each translates HTTP to ``JobService`` calls and back, nothing more.

``ROUTERS`` is what the app includes, in order; a new area adds its ``router`` here.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import control, debug, events, flows, health, jobs, metrics, store

ROUTERS: list[APIRouter] = [
    health.router,
    flows.router,
    jobs.router,
    control.router,
    debug.router,
    events.router,
    metrics.router,
    store.router,
]
