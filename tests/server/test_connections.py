"""Slow and idle clients cannot take the server away: a header deadline and a connection cap."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

import pytest

from tests.server.conftest import Live, live_server

PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "


@contextmanager
def slow_clients(live: Live, n: int, first: bytes = PARTIAL) -> Iterator[list[socket.socket]]:
    """``n`` connections that each send the start of a request and then nothing."""
    parts = urlsplit(live.url)
    with ExitStack() as stack:
        socks = []
        for _ in range(n):
            s = stack.enter_context(socket.create_connection((parts.hostname, parts.port), timeout=10))
            s.sendall(first)
            socks.append(s)
        yield socks


def closed_by_server(s: socket.socket, within_s: float) -> bool:
    """Whether the server closes ``s`` within ``within_s`` (reads until EOF or the deadline)."""
    s.settimeout(within_s)
    try:
        while s.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_a_client_that_never_finishes_its_headers_is_disconnected() -> None:
    with live_server(header_timeout_s=0.3) as live, slow_clients(live, 3) as socks:
        started = time.monotonic()
        assert all(closed_by_server(s, within_s=10) for s in socks)
        assert time.monotonic() - started >= 0.2
        assert live.client.get("/healthz").status_code == 200


def test_the_deadline_applies_again_after_each_response() -> None:
    with live_server(header_timeout_s=0.3, keep_alive_s=60) as live, slow_clients(live, 1, b"") as (s,):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.settimeout(10)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.sendall(PARTIAL)  # the next request starts and never ends
        assert closed_by_server(s, within_s=10)


def test_a_complete_request_is_not_cut_by_the_deadline() -> None:
    with live_server(header_timeout_s=0.3, keep_alive_s=60) as live, slow_clients(live, 1, b"") as (s,):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.settimeout(10)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        assert not closed_by_server(s, within_s=0.6)  # idle between requests: keep-alive's to end


@pytest.mark.slow
def test_healthz_answers_while_500_slow_clients_hold_connections() -> None:
    with live_server(header_timeout_s=60) as live, slow_clients(live, 500):
        for _ in range(20):
            assert live.client.get("/healthz").status_code == 200


def test_connections_over_the_cap_are_refused_with_503_and_the_server_recovers() -> None:
    with live_server(max_connections=20, header_timeout_s=60) as live:
        with slow_clients(live, 20), live.new_client() as over:
            refused = over.get("/healthz")
            assert refused.status_code == 503
            assert refused.text == "too many connections (limit)"
        with live.new_client() as ok:
            for _ in range(50):  # the server sees the 20 go away on its own time
                if ok.get("/healthz").status_code == 200:
                    break
            else:
                raise AssertionError("the server did not recover once the slow clients left")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("header_timeout_s", 0, "greater than 0"),
        ("max_connections", 0, "greater than or equal to 1"),
        ("keep_alive_s", 0, "greater than or equal to 1"),
    ],
)
def test_limits_are_validated(name: str, value: int, message: str) -> None:
    from weirflow.server import SettingsError, load_settings

    with pytest.raises(SettingsError, match=f"WEIRFLOW_{name.upper()}: .*{message}"):
        load_settings(**{name: value})
