"""A finished job the server keeps for reading lets go of the parts it ran with at once
(``Job.release``), unless a debug session is attached to it; every answer about it is the
same either way.

The server keeps ``keep_finished_jobs`` finished jobs. Each used to keep its runners, slot
queues, routes and contexts (some 30 objects more per job) until it was forgotten, a
thousand jobs later: old objects that every collection of the cyclic GC's older generations
scanned again (in the benchmark of ``POST /api/jobs``, half the GC's time, and its longest
pauses)."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.server.conftest import SERVED
from weirflow.server.app import create_app
from weirflow.server.settings import Settings


@pytest.fixture
async def app_client() -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(Settings(), flows=SERVED)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield app, client


async def _run(client: httpx.AsyncClient, app: Any, *, debugged: bool) -> tuple[str, weakref.ref[Any]]:
    """A ``stream`` job fed over HTTP and closed; a weak reference to one of its runners."""
    started = await client.post("/api/jobs", json={"flow": "stream", "keep_open": True})
    assert started.status_code == 201, started.text
    job_id = started.json()["id"]
    runner = weakref.ref(app.state.engine.jobs[job_id].runners["sink"])
    if debugged:  # a debug session is attached on first use
        assert (await client.get(f"/api/jobs/{job_id}/breakpoints")).status_code == 200
    sent = await client.post(f"/api/jobs/{job_id}/input", json={"slot": "clean.items", "items": [1, 2]})
    assert sent.status_code == 202, sent.text
    assert (await client.post(f"/api/jobs/{job_id}/close")).status_code == 200
    result = await client.get(f"/api/jobs/{job_id}/result", params={"wait_s": 5})
    assert result.status_code == 200, result.text
    return job_id, runner


async def _answers(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """What the read routes answer about a job, without what differs between two jobs."""
    out: dict[str, Any] = {}
    for name in ("", "/result", "/queues", "/dead-letters", "/debug"):
        response = await client.get(f"/api/jobs/{job_id}{name}")
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        if name == "":
            body = {k: v for k, v in body.items() if k not in ("id", "created_at")}
        out[name or "/"] = body
    return out


async def test_a_finished_job_without_a_debug_session_is_freed_by_reference_counting(
    app_client: tuple[Any, httpx.AsyncClient], no_cyclic_gc: None
) -> None:
    app, client = app_client
    job_id, runner = await _run(client, app, debugged=False)
    assert runner() is None  # freed as the server let go: no cycle left for the GC
    job = app.state.engine.jobs[job_id]  # still kept for reading
    assert job.released and job.runners == {}


async def test_a_job_with_a_debug_session_keeps_its_parts_until_forgotten(
    app_client: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = app_client
    job_id, runner = await _run(client, app, debugged=True)
    assert runner() is not None and not app.state.engine.jobs[job_id].released


async def test_every_answer_about_a_finished_job_is_the_same_released_or_not(
    app_client: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = app_client
    released, _ = await _run(client, app, debugged=False)
    kept, _ = await _run(client, app, debugged=True)
    assert app.state.engine.jobs[released].released and not app.state.engine.jobs[kept].released
    a, b = await _answers(client, released), await _answers(client, kept)
    assert a["/result"]["outputs"] == {"clean.out": [1, 2], "sink.all": [[1, 2]]}
    assert a == b
    for path in ("clean.items", "nope.items"):  # one debug view's slot, known or not
        view = await client.get(f"/api/jobs/{released}/debug", params={"slot": path})
        other = await client.get(f"/api/jobs/{kept}/debug", params={"slot": path})
        assert (view.status_code, view.json()) == (other.status_code, other.json())
