"""What routes get injected: the ``JobService`` of this app, and documented error answers."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request, Response

from .errors import UnavailableError
from .models import Error, ValidationFailed
from .service import JobService


async def get_service(request: Request) -> JobService:
    """The app's service (created with the engine in the lifespan); ``503`` outside it.
    (``async``: a plain ``def`` dependency would send every request through a thread.)
    The hottest routes (start a job, a job's queues) call it themselves: FastAPI solves
    each dependency of each request anew, at a cost that showed in their profiles."""
    service: JobService | None = getattr(request.app.state, "service", None)
    if service is None or not service.ready:
        raise UnavailableError("the engine is not running")
    return service


Service = Annotated[JobService, Depends(get_service)]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error codes, plus those any route may answer."""
    described = {
        400: "Malformed request (e.g. a body that is not UTF-8)",
        401: "Missing or invalid API key",
        403: "The key's role may not call this",
        404: "No such job or flow",
        409: "The job is in the wrong state",
        413: "Request body over the server's max_body_bytes",
        422: "InvalidRequestError request; detail names each field path",
        429: "Too many bad API keys from this address (Retry-After says when to try again)",
        503: "The engine is not running",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({400, 401, 403, 413, 422, 429, 503, *codes}):
        model = ValidationFailed if code == 422 else Error
        out[code] = {"model": model, "description": described.get(code, "Error")}
    return out


def json_answer(data: Any, status_code: int = 200) -> Response:
    """``data`` encoded once, straight to JSON: for hot routes whose answer is built to match
    the route's ``response_model`` (kept for the OpenAPI schema). Returning a ``Response``
    skips FastAPI's validation and re-serialisation of the answer, which cost as much as
    building it (tests check these answers against their models)."""
    return Response(orjson.dumps(data), status_code=status_code, media_type="application/json")
