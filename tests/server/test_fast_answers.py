"""Hot routes answer with JSON built once (no response-model pass): the answers still match
the models the OpenAPI schema documents for them."""

from __future__ import annotations

from tests.server.conftest import Live, send, start_job
from weirflow.server.models import JobInfo, JobQueues


def test_start_and_queues_answers_match_their_models(live: Live) -> None:
    c = live.client
    started = c.post("/api/jobs", json={"flow": "stream", "keep_open": True})
    assert started.status_code == 201
    assert started.headers["content-type"] == "application/json"
    info = JobInfo.model_validate(started.json(), strict=False)
    assert set(started.json()) == set(JobInfo.model_fields)
    c.post(f"/api/jobs/{info.id}/pause")
    send(c, info.id, "clean.items", ["a", "b"])
    queues = c.get(f"/api/jobs/{info.id}/queues")
    assert queues.status_code == 200
    parsed = JobQueues.model_validate(queues.json())
    assert parsed.slots["clean.items"].size == 2
    assert set(queues.json()["slots"]["clean.items"]) == set(type(parsed.slots["clean.items"]).model_fields)
    assert start_job(c, "stream")["flow"] == "stream"
