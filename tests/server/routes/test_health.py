"""``/healthz`` and ``/readyz``."""

from __future__ import annotations

import httpx

from tests.server.conftest import SERVED, Live, send, start_job
from tests.server.flows.served import STREAM_CAPACITY
from weirflow.server import Settings, create_app


def test_healthz(live: Live) -> None:
    response = live.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_jobs_with_full_slots(fresh: Live) -> None:
    c = fresh.client
    ready = c.get("/readyz").json()
    assert ready == {
        "status": "ready",
        "flows": 2,
        "jobs": dict.fromkeys(["pending", "running", "paused", "completed", "failed", "cancelled"], 0),
        "full_slots": [],
        "registry": None,  # no --registry: no node registry to report
    }
    jid = start_job(c, "stream", keep_open=True)["id"]
    c.post(f"/api/jobs/{jid}/pause")
    send(c, jid, "clean.items", list(range(STREAM_CAPACITY)))
    ready = c.get("/readyz").json()
    assert ready["jobs"]["paused"] == 1
    assert ready["full_slots"] == [{"job": jid, "flow": "stream", "slots": ["clean.items"]}]


async def test_readyz_is_503_until_the_engine_runs() -> None:
    # the app's lifespan has not run: no engine yet (the live server is never in this state)
    app = create_app(Settings(), flows=SERVED)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"detail": "the engine is not running"}
        assert (await client.get("/healthz")).status_code == 200
