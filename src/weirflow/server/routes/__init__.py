"""Route modules: each translates HTTP to ``JobService`` calls and back, nothing more.

``ROUTERS`` is what the app includes, in order; a new area (e.g. the debugger's
``routes/debug.py``) adds its ``router`` here.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import control, events, flows, health, jobs, metrics

ROUTERS: list[APIRouter] = [
    health.router,
    flows.router,
    jobs.router,
    control.router,
    events.router,
    metrics.router,
]
