"""``POST /api/jobs`` is a ``DirectRoute``: a well-formed start skips FastAPI's request
handling. Every answer must be what FastAPI's own handler gives for the same request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.server.conftest import ADMIN_KEY, READ_KEY, Live, live_server
from weirflow.server.app import create_app
from weirflow.server.direct_route import DirectRoute, direct_shape
from weirflow.server.routes import control
from weirflow.server.settings import Settings

JSON = {"content-type": "application/json"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

# (body, headers): good starts, and every way a start can be wrong
REQUESTS: list[tuple[bytes, dict[str, str]]] = [
    (b'{"flow": "stream", "inputs": {"clean.items": [1, "a", {"b": [null]}]}}', {**JSON, **ADMIN}),
    (b'{"flow": "stream", "keep_open": true}', {**JSON, **ADMIN}),
    (b'{"flow": "stream"}', {"content-type": "application/json; charset=utf-8", **ADMIN}),
    (b'{"flow": "stream"}', {"content-type": "text/plain", **ADMIN}),
    (b'{"flow": "stream"}', ADMIN),  # no content type
    (b'{"flow": ', {**JSON, **ADMIN}),
    (b"\xff\xfe{}", {**JSON, **ADMIN}),
    (b"", {**JSON, **ADMIN}),
    (b"[1]", {**JSON, **ADMIN}),
    (b'{"flow": "stream", "bogus": 1}', {**JSON, **ADMIN}),
    (b'{"flow": ""}', {**JSON, **ADMIN}),
    (b'{"flow": "nope"}', {**JSON, **ADMIN}),
    (b'{"flow": "stream", "inputs": {"no.slot": [1]}}', {**JSON, **ADMIN}),
    (b'{"flow": "stream", "inputs": [1]}', {**JSON, **ADMIN}),
    (b'{"flow": "stream", "inputs": {"clean.items": [1, NaN]}}', {**JSON, **ADMIN}),
    (b'{"flow": "stream", "inputs": {"clean.items": [18446744073709551616]}}', {**JSON, **ADMIN}),
    (b'{"flow": "stream", "keep_open": "yes please"}', {**JSON, **ADMIN}),
    (b'{"flow": "stream"}', JSON),  # no key
    (b'{"flow": "stream"}', {**JSON, "Authorization": "Bearer wrong"}),
    (b'{"flow": "stream"}', {**JSON, "Authorization": f"Bearer {READ_KEY}"}),
    (b'{"flow": ', {**JSON, "Authorization": "Bearer wrong"}),  # bad JSON and a bad key
    (b'{"flow": ""}', JSON),  # an invalid body and no key
]


@pytest.fixture(scope="module")
def keyed() -> Iterator[Live]:
    with live_server(api_keys=f"{ADMIN_KEY}:admin,{READ_KEY}:read", login_failures=10_000) as server:
        yield server


def _answer(response: httpx.Response) -> tuple[int, Any, str | None]:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if response.status_code == 201:  # a new job each time: its id and start differ
        body = {k: v for k, v in body.items() if k not in ("id", "created_at")}
    return response.status_code, body, response.headers.get("www-authenticate")


def _fastapi_only(app: FastAPI) -> None:
    """While any dependency override is in force, a ``DirectRoute`` hands every request to
    FastAPI's own handler: an override of a dependency no route has does just that."""

    async def unused() -> None: ...

    app.dependency_overrides[unused] = unused


def test_start_answers_are_fastapis(keyed: Live) -> None:
    app = keyed.server.config.app
    route = next(r for r in control.start_router.routes if getattr(r, "path", None) == "/api/jobs")
    assert isinstance(route, DirectRoute) and direct_shape(route) is not None
    c = keyed.client
    direct = [_answer(c.post("/api/jobs", content=body, headers=h)) for body, h in REQUESTS]
    _fastapi_only(app)
    try:
        fastapi = [_answer(c.post("/api/jobs", content=body, headers=h)) for body, h in REQUESTS]
    finally:
        app.dependency_overrides.clear()
    for (body, headers), mine, theirs in zip(REQUESTS, direct, fastapi, strict=True):
        assert mine == theirs, (body, headers)
    statuses = [status for status, _, _ in direct]
    assert statuses.count(201) == 3 and {401, 403, 404, 422} <= set(statuses), statuses


async def _post_disconnected(app: FastAPI) -> list[int]:
    """``POST /api/jobs`` whose client went away before its body came: the statuses sent."""
    sent: list[int] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/jobs",
        "raw_path": b"/api/jobs",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}  # (a server's receive keeps saying so)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    await app(scope, receive, send)
    return sent


async def test_a_client_gone_before_its_body_gets_fastapis_answer() -> None:
    app = create_app(Settings(), flows="tests.server.flows.served")
    async with app.router.lifespan_context(app):
        direct = await _post_disconnected(app)
        _fastapi_only(app)
        fastapi = await _post_disconnected(app)
    assert direct == fastapi == [400]
