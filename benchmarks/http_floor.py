"""The floor for ``benchmarks.http_api``: a bare FastAPI app under the same uvicorn settings,
answering the same shapes with no engine behind them (what FastAPI + uvicorn cost alone)."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi import FastAPI, Request

SLOTS = 100
app = FastAPI()
_ids = itertools.count()


def _slot(i: int) -> dict[str, Any]:
    return {
        "size": 0,
        "capacity": 100,
        "usage": 0.0,
        "high_water": 1,
        "enqueued": 1,
        "processed": 1,
        "in_flight": 0,
        "dead_lettered": 0,
        "blocked_emitters": 0,
        "blocked_s": 0.0,
        "state": "ok",
    }


QUEUES = {"slots": {f"r{i:03d}.inp": _slot(i) for i in range(SLOTS)}, "full": 0, "near_full": 0}


@app.get("/queues")
async def queues() -> dict[str, Any]:
    return QUEUES


@app.post("/start", status_code=201)
async def start(request: Request) -> dict[str, Any]:
    body = await request.json()
    return {"id": f"{next(_ids):032x}", "flow": body["flow"], "status": "running"}
