"""``GET /api/jobs/{id}/events``: the job's live events as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.responses import StreamingResponse

from ..auth import require_read
from ..deps import Service, errors

router = APIRouter(prefix="/api/jobs", tags=["events"], dependencies=[Depends(require_read)])


SSE_EVENT = {
    "type": "object",
    "description": "One event: `id`, `event` (its kind) and `data` (JSON text); the stream's "
    "first message is a `retry` (milliseconds) for reconnects",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream of events `status`, `queue`, `dead_letter`, `end` "
            "(and `gap` when a reconnect asked for events no longer kept)",
            # (OpenAPI 3.1: the schema of a text/event-stream describes each event)
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
        **errors(404),
    },
)
async def job_events(
    job_id: str,
    service: Service,
    last_event_id: Annotated[
        int, Header(alias="Last-Event-ID", ge=0, description="Replay the events after this id (0: all).")
    ] = 0,
) -> StreamingResponse:
    """Status changes (with pause reasons), queue fill changes, dead letters; each with an
    increasing ``id``. The last events of each job are kept (``event_buffer``, default
    10,000) for reconnects. The stream ends after the ``end`` event."""
    stream = service.events(job_id, last_event_id)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
