"""API errors and the handlers that turn every error into a JSON ``{"detail": ...}`` answer.

Services raise ``ApiError`` subclasses; engine errors that reach a route mean
the job is in the wrong state (``409`` with the engine's message; a debugger
condition that does not compile is ``422`` with its ``line`` and ``column``). Request
validation errors become ``422`` whose ``detail`` names each field path
(``body.items: Field required``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from ..debug.conditions import ConditionError
from ..errors import DebugError, FlowError, JobError, SuperviseError, WeirflowError


class ApiError(Exception):
    """An answer other than success: ``status``, ``detail`` and extra JSON fields."""

    status = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra


class NotFoundError(ApiError):
    """No job or flow by that name."""

    status = 404


class ConflictError(ApiError):
    """The job is in the wrong state for this call."""

    status = 409


class UnavailableError(ApiError):
    """The engine is not running (starting or shutting down)."""

    status = 503


class InvalidRequestError(ApiError):
    """A well-formed request names something the flow does not have; ``loc`` is the field path."""

    status = 422

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        path = ".".join(str(p) for p in loc)
        super().__init__(f"{path}: {message}", errors=[{"loc": list(loc), "msg": message, "type": "value"}])


class StoreRefusedAnswerError(InvalidRequestError):
    """The durable store refused to hold what the request asked it to write
    (``wf.StoreRefusedError``: sending it again fails again): ``422`` with the store's message,
    ``error: StoreRefusedError``. A store that failed or is unreachable is a ``503`` instead."""

    def __init__(self, message: str) -> None:
        super().__init__(["body"], message)
        self.extra["errors"][0]["type"] = "store_refused"


class InvalidConditionError(InvalidRequestError):
    """A CEL condition or expression failed to compile (``line``/``column`` say where) or to run."""

    def __init__(self, loc: Sequence[str | int], error: ConditionError) -> None:
        super().__init__(loc, str(error))
        self.extra.update(line=error.line, column=error.column)


class SlotStayedFullError(ApiError):
    """Items were refused because the slot stayed full; ``accepted`` were queued first."""

    status = 429


def _loc(loc: Sequence[Any]) -> list[str | int]:
    return [p if isinstance(p, int) else str(p) for p in loc]


def validation_detail(errors: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    """A one-line ``detail`` with field paths, and the errors as plain JSON."""
    items = [{"loc": _loc(e["loc"]), "msg": str(e["msg"]), "type": str(e["type"])} for e in errors]
    detail = "; ".join(f"{'.'.join(str(p) for p in i['loc'])}: {i['msg']}" for i in items)
    return detail or "invalid request", items


def _json(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def error_name(exc: BaseException) -> dict[str, str]:
    """``{"error": "InputClosedError"}``: the Python exception the same call raises in process
    (the one a service turned into this answer, kept as its ``__context__``), for clients
    that map answers back to exceptions; empty when there is none."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, WeirflowError):
            return {"error": type(e).__name__}
    return {}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status, {"detail": exc.detail, **error_name(exc), **exc.extra}, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail, items = validation_detail(exc.errors())
    return _json(422, {"detail": detail, "errors": items})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": allowed_methods(request)}
    return _json(exc.status_code, {"detail": str(exc.detail)}, headers)


def allowed_methods(request: Request) -> str:
    """Every method some route of the request's path answers. (Starlette's 405 names only the
    methods of the first route whose path matched: ``Allow: POST`` for
    ``/api/jobs/{id}/breakpoints``, which answers ``GET`` too.) Each method is asked of the
    app's routes as a request of that method would be (included routers match as a whole)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return ", ".join(allowed)


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    status = 422 if isinstance(exc, FlowError) else 409
    return _json(status, {"detail": str(exc), **error_name(exc)})


async def _debug_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ConditionError):
        return await _api_error(request, InvalidConditionError(["body"], exc))
    return _json(409, {"detail": str(exc), **error_name(exc)})


async def _supervise_error(request: Request, exc: Exception) -> JSONResponse:
    # each SuperviseError carries its status (PipelineNotFound 404, InvalidCommand 422, ...)
    assert isinstance(exc, SuperviseError)
    body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
    accepted = getattr(exc, "accepted", None)
    if accepted is not None:
        body["accepted"] = accepted
    state = getattr(exc, "state", None)  # a PipelineStateError's: ``paused``, ``full``...
    if state:
        body["state"] = state
    if exc.status == 422:  # the shape of every 422
        body["errors"] = [{"loc": ["body"], "msg": str(exc), "type": "value"}]
    return _json(exc.status, body)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(JobError, _engine_error)
    app.add_exception_handler(DebugError, _debug_error)
    app.add_exception_handler(SuperviseError, _supervise_error)
    app.add_exception_handler(WeirflowError, _engine_error)
