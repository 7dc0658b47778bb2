"""Pausing and resuming a durable queue of the server's store (Bull Board's queue pause).

``GET /api/store/queues`` (``read``) lists the paused queues; ``POST
/api/store/queues/{queue}/pause`` and ``.../resume`` (``admin``) pause and resume one: a
paused queue's jobs are not claimed by any worker of the store until it is resumed
(running jobs go on, submits are queued). Both answer the queue's state; doing it
twice changes nothing (``changed: false``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from ..auth import require_admin, require_read
from ..store_models import MAX_NAME, PausedQueues, QueueState
from .store import StoreDep, answers

router = APIRouter(prefix="/api/store/queues", tags=["store"])
READ = [Depends(require_read)]
ADMIN = [Depends(require_admin)]
QueueName = Annotated[str, Path(min_length=1, max_length=MAX_NAME, pattern=r"^[^\x00]*$")]


@router.get("", response_model=PausedQueues, dependencies=READ, responses=answers())
async def paused_queues(store: StoreDep) -> dict[str, Any]:
    """The paused queues, by name."""
    return {"paused": await store.paused_queues()}


@router.post("/{queue}/pause", response_model=QueueState, dependencies=ADMIN, responses=answers())
async def pause_queue(queue: QueueName, store: StoreDep) -> dict[str, Any]:
    """Stop handing out the queue's jobs until it is resumed."""
    changed = await store.pause_queue(queue)
    return {"queue": queue, "paused": True, "changed": changed}


@router.post("/{queue}/resume", response_model=QueueState, dependencies=ADMIN, responses=answers())
async def resume_queue(queue: QueueName, store: StoreDep) -> dict[str, Any]:
    """Hand out the queue's jobs again (its idle workers are woken)."""
    changed = await store.resume_queue(queue)
    return {"queue": queue, "paused": False, "changed": changed}
