"""``POST /api/flows/{name}/check``: the problems of a start request, without starting a job."""

from __future__ import annotations

from tests.server.conftest import Live


def test_check_lists_every_unknown_slot_and_starts_nothing(fresh: Live) -> None:
    response = fresh.client.post(
        "/api/flows/stream/check", json={"inputs": {"clean.items": [1, 2], "nope.x": [], "sink.zzz": [3]}}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is False
    assert body["inputs"] == {"clean.items": 2, "nope.x": 0, "sink.zzz": 1}
    assert [p.split(" (")[0] for p in body["problems"]] == [
        "flow 'stream' has no slot 'nope.x'",
        "flow 'stream' has no slot 'sink.zzz'",
    ]
    ok = fresh.client.post("/api/flows/stream/check", json={"inputs": {"clean.items": ["a"]}}).json()
    assert ok == {"valid": True, "problems": [], "inputs": {"clean.items": 1}}
    assert fresh.client.get("/api/jobs").json()["total"] == 0
    assert fresh.client.post("/api/flows/nope/check", json={}).status_code == 404
