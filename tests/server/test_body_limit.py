"""Request bodies over ``max_body_bytes`` get 413, declared or not."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.server.conftest import Live, live_server
from weirflow.server import Settings

LIMIT = 1024


@pytest.fixture(scope="module")
def small() -> Iterator[Live]:
    with live_server(max_body_bytes=LIMIT) as server:
        yield server


def _body(size: int) -> bytes:
    body = json.dumps({"flow": "stream", "inputs": {"clean.items": ["x" * size]}}).encode()
    return body


def test_the_default_cap_is_8_mib() -> None:
    assert Settings().max_body_bytes == 8 * 1024 * 1024


def test_declared_length_over_the_cap_is_413(small: Live) -> None:
    response = small.client.post(
        "/api/jobs", content=_body(2 * LIMIT), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body is larger than {LIMIT} bytes"}


def test_chunked_body_over_the_cap_is_413(small: Live) -> None:
    body = _body(4 * LIMIT)
    chunks = (body[i : i + 256] for i in range(0, len(body), 256))
    with small.new_client() as client:
        response = client.post("/api/jobs", content=chunks, headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_a_body_under_the_cap_is_read(small: Live) -> None:
    body = _body(LIMIT // 2)
    assert len(body) < LIMIT
    response = small.client.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 201
    chunks = iter([body[:100], body[100:]])
    with small.new_client() as client:
        chunked = client.post("/api/jobs", content=chunks, headers={"content-type": "application/json"})
    assert chunked.status_code == 201


def test_413_also_on_routes_that_take_no_body(small: Live) -> None:
    response = small.client.request("GET", "/api/flows", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413


def test_a_small_declared_length_does_not_let_a_chunked_body_past_the_cap(small: Live) -> None:
    # Transfer-Encoding frames the body, whatever Content-Length says (HTTP/1.1): the cap
    # counts what is read
    body = _body(4 * LIMIT)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(c), c) for c in (body[i : i + 256] for i in range(0, len(body), 256))
    )
    head = (
        b"POST /api/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    parts = urlsplit(small.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(head + chunks + b"0\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            got = s.recv(4096)
            if not got:
                break
            answer += got
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
