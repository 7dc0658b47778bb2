"""A live server for the tests: uvicorn in a background thread on a free loopback port.

``live_server(**settings)`` starts ``create_app`` under ``make_server`` (port 0, so
the OS picks a free port; the server reports the URL once bound) and stops it on
exit. Tests talk to it with httpx, as any client would.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from weirflow.server import Server, Settings, create_app, make_server

SERVED = "tests.server.flows.served"
FLOW_DIR = "tests/server/flows"
ADMIN_KEY = "admin-key-0123"
READ_KEY = "read-key-4567"
START_TIMEOUT_S = 30
# a failure bound for one request, not a speed claim: a pipeline's start spawns a process,
# which took over 10 s at load 15-17 (the supervise HTTP tests timed out there)
CLIENT_TIMEOUT_S = 60


@dataclass
class Live:
    """A running server: its base URL and a client for it (no key unless ``headers``)."""

    url: str
    client: httpx.Client
    server: Server

    def new_client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S, headers=headers)


@pytest.fixture(scope="session", autouse=True)
def _no_weirflow_environment() -> Iterator[None]:
    """Settings come from the environment; the tests' must not come from the developer's."""
    with pytest.MonkeyPatch.context() as mp:
        # (WEIRFLOW_SCREENSHOTS is the tests' own: where the browser tests put their pictures)
        for name in [n for n in os.environ if n.startswith("WEIRFLOW_") and n != "WEIRFLOW_SCREENSHOTS"]:
            mp.delenv(name)
        yield


@contextmanager
def live_server(
    flows: str = SERVED, headers: dict[str, str] | None = None, **settings: Any
) -> Iterator[Live]:
    app = create_app(Settings(port=0, **settings), flows=flows)
    bound = threading.Event()
    server = make_server(app, app.state.settings, on_listening=lambda urls: bound.set())
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    try:
        if not bound.wait(START_TIMEOUT_S):
            raise RuntimeError("the live server did not start")
        with httpx.Client(base_url=server.urls[0], timeout=CLIENT_TIMEOUT_S, headers=headers or {}) as client:
            yield Live(server.urls[0], client, server)
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        assert not thread.is_alive(), "the live server did not stop"


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """An open server (no API keys) serving the flows of ``flows/served.py``."""
    with live_server() as server:
        yield server


@pytest.fixture
def fresh() -> Iterator[Live]:
    """A server of its own for one test (exact job counts)."""
    with live_server() as server:
        yield server


# -- helpers ----------------------------------------------------------------------------


def start_job(client: httpx.Client, flow: str = "stream", **body: Any) -> dict[str, Any]:
    response = client.post("/api/jobs", json={"flow": flow, **body})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def send(
    client: httpx.Client, job_id: str, slot: str, items: list[Any], timeout_s: float = 5
) -> httpx.Response:
    return client.post(
        f"/api/jobs/{job_id}/input", json={"slot": slot, "items": items, "timeout_s": timeout_s}
    )


def finished_result(client: httpx.Client, job_id: str, wait_s: float = 10) -> dict[str, Any]:
    """The result, waiting server-side for the job to finish."""
    response = client.get(f"/api/jobs/{job_id}/result", params={"wait_s": wait_s})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@dataclass
class SSEvent:
    id: int | None
    kind: str
    data: dict[str, Any]


def read_events(
    response: httpx.Response, stop: Callable[[SSEvent], bool] = lambda e: False
) -> Iterator[SSEvent]:
    """Parse a ``text/event-stream`` body; ends when the stream does or after an event ``stop`` accepts."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                event = SSEvent(
                    int(fields["id"]) if "id" in fields else None,
                    fields.get("event", "message"),
                    json.loads(fields["data"]),
                )
                yield event
                if stop(event):
                    return
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
