"""``DirectRoute``: an ``APIRoute`` whose well-formed requests skip FastAPI's request handling.

FastAPI handles every request the same general way: it reads and decodes the body,
solves each dependency anew (cache keys, scopes, generator checks, recomputed per
request) and validates the body through its field machinery. On ``POST /api/jobs``
that was about a fifth of the whole request's CPU, more than the floor app's entire
request. A ``DirectRoute`` handles the common request itself — a JSON body
(``Content-Type: application/json``) that decodes and validates against the body
model — with the same steps in the same order: the route's dependencies (the API-key
check), then the body model, then the endpoint. Anything else (another content type,
a body that does not decode or validate, dependency overrides in force) goes to
FastAPI's own handler, which answers exactly as it always did: so every error answer
(``422`` with its field paths, ``400``, ``401``...) is FastAPI's.

Only for endpoints of the form ``async def f(body: Model, request: Request)`` whose
dependencies take the request alone (``RoleBearer``) and return nothing used: other
routes are left to FastAPI as they are (``direct_shape``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from .auth import RoleBearer

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class DirectRoute(APIRoute):
    """See the module docstring."""

    def get_route_handler(self) -> Handler:
        fastapi_handler = super().get_route_handler()
        shape = direct_shape(self)
        if shape is None:
            return fastapi_handler
        model, checks, endpoint = shape

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides or not _json_content(request):
                return await fastapi_handler(request)
            body = await _body(request)  # (FastAPI's handler reads the same cached body)
            if body is None:  # the client went away: FastAPI's answer to that, as it reads again
                return await fastapi_handler(request)
            try:  # the stdlib's parser, as FastAPI's: orjson reads an integer past 64 bits
                data = json.loads(body)  # as a float, where this one keeps it (and it is refused)
            except ValueError:  # (JSONDecodeError, and bytes that are not UTF-8)
                return await fastapi_handler(request)
            for check in checks:  # first, as FastAPI does: a bad key is 401 before any 422
                await check(request)
            try:
                parsed = model.model_validate(data)
            except ValidationError:
                return await fastapi_handler(request)  # (its checks pass again, unchanged)
            return await endpoint(parsed, request)

        return handler


async def _body(request: Request) -> bytes | None:
    """``request.body()``, read as Starlette reads it and cached where it caches it (so that
    FastAPI's handler, if it takes over, finds it), without the async generator that
    ``Request.stream`` is: a quarter of the cost, on the hottest route. ``None`` if the
    client disconnected (the server's ``receive`` keeps saying so: FastAPI's handler hears
    it again and answers as it does); a request read before goes through Starlette's code."""
    if hasattr(request, "_body") or request._stream_consumed:
        return await request.body()
    chunks: list[bytes] = []
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    request._stream_consumed = True
    request._body = body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body


def _json_content(request: Request) -> bool:
    for name, value in request.scope["headers"]:
        if name == b"content-type":
            return bool(value == b"application/json")
    return False


def direct_shape(
    route: APIRoute,
) -> tuple[type[BaseModel], list[RoleBearer], Callable[..., Coroutine[Any, Any, Response]]] | None:
    """``(body model, dependencies, endpoint)`` if ``route`` can be handled directly."""
    dependant = route.dependant
    endpoint = route.endpoint
    if not inspect.iscoroutinefunction(endpoint) or dependant.request_param_name != "request":
        return None
    if (
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.background_tasks_param_name
        or dependant.response_param_name
        or len(dependant.body_params) != 1
    ):
        return None
    field = dependant.body_params[0]
    model = field.field_info.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or field.name != "body":
        return None
    signature = inspect.signature(endpoint)
    if list(signature.parameters) != ["body", "request"]:
        return None
    if signature.return_annotation not in ("Response", Response):  # (answered as it is)
        return None
    checks = []
    for dep in dependant.dependencies:
        if not isinstance(dep.call, RoleBearer) or dep.dependencies:
            return None
        checks.append(dep.call)
    return model, checks, endpoint
