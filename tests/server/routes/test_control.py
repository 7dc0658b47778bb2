"""Driving jobs through the API: a streaming job end to end, backpressure as 429, state errors."""

from __future__ import annotations

import pytest

from tests.server.conftest import Live, finished_result, send, start_job
from tests.server.flows.served import STREAM_CAPACITY


def test_streaming_job_end_to_end(live: Live) -> None:
    c = live.client
    job = start_job(c, "stream", keep_open=True)
    assert job["status"] == "running" and job["pause"] is None and not job["input_closed"]
    jid = job["id"]

    assert send(c, jid, "clean.items", [1, 2, 3]).json() == {"accepted": 3}

    paused = c.post(f"/api/jobs/{jid}/pause", json={"reason": "inspect"})
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert paused.json()["pause"]["reason"] == "inspect"
    assert c.get(f"/api/jobs/{jid}").json()["pause"]["reason"] == "inspect"

    # paused: nothing is taken from the slot, so it fills up to capacity
    queued = c.get(f"/api/jobs/{jid}/queues").json()["slots"]["clean.items"]["size"]
    more = list(range(4, 4 + STREAM_CAPACITY - queued))
    accepted = send(c, jid, "clean.items", more)
    assert accepted.status_code == 202 and accepted.json() == {"accepted": len(more)}

    queues = c.get(f"/api/jobs/{jid}/queues").json()
    slot = queues["slots"]["clean.items"]
    assert slot["size"] == slot["capacity"] == STREAM_CAPACITY
    assert slot["state"] == "full" and slot["paused"] is True
    assert slot["enqueued"] == slot["processed"] + slot["size"] + slot["in_flight"] + slot["dead_lettered"]
    assert queues["full"] == 1

    resumed = c.post(f"/api/jobs/{jid}/resume")
    assert resumed.status_code == 200
    body = resumed.json()
    assert body["status"] == "running" and body["pause"] is None
    assert any("clean.items" in w and "full" in w for w in body["warnings"]), body["warnings"]

    closed = c.post(f"/api/jobs/{jid}/close")
    assert closed.status_code == 200 and closed.json()["input_closed"] is True

    result = finished_result(c, jid)
    sent = [1, 2, 3, *more]
    assert result["status"] == "completed"
    assert result["outputs"] == {"clean.out": sent, "sink.all": [sent]}
    assert result["error"] is None and result["dead_letters"] == []


def test_full_slot_answers_429_with_retry_after_and_loses_nothing(live: Live) -> None:
    c = live.client
    jid = start_job(c, "stream", keep_open=True)["id"]
    assert c.post(f"/api/jobs/{jid}/pause").status_code == 200  # the consumer takes nothing now

    items = list(range(STREAM_CAPACITY + 2))
    refused = send(c, jid, "clean.items", items, timeout_s=0.2)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    body = refused.json()
    assert body["accepted"] == STREAM_CAPACITY
    assert body["slot"] == "clean.items"
    assert "stayed full" in body["detail"]

    assert c.post(f"/api/jobs/{jid}/resume").status_code == 200
    rest = items[body["accepted"] :]
    assert send(c, jid, "clean.items", rest).json() == {"accepted": len(rest)}
    c.post(f"/api/jobs/{jid}/close")
    result = finished_result(c, jid)
    assert result["outputs"]["clean.out"] == items
    assert result["dead_letters"] == []


def test_initial_inputs_run_to_completion(live: Live) -> None:
    c = live.client
    jid = start_job(c, "stream", inputs={"clean.items": ["a", "b"]})["id"]
    result = finished_result(c, jid)
    assert result == {
        "status": "completed",
        "outputs": {"clean.out": ["a", "b"], "sink.all": [["a", "b"]]},
        "error": None,
        "dead_letters": [],
    }
    assert c.get(f"/api/jobs/{jid}").json()["status"] == "completed"


def test_cancel_dead_letters_queued_items(live: Live) -> None:
    c = live.client
    jid = start_job(c, "stream", keep_open=True)["id"]
    c.post(f"/api/jobs/{jid}/pause")
    send(c, jid, "clean.items", ["x", "y"])
    cancelled = c.post(f"/api/jobs/{jid}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    result = finished_result(c, jid)
    assert result["status"] == "cancelled"
    assert [(d["item"], d["reason"]) for d in result["dead_letters"]] == [
        ("x", "job_cancelled"),
        ("y", "job_cancelled"),
    ]


def test_wrong_state_is_409_with_the_engine_message(live: Live) -> None:
    c = live.client
    jid = start_job(c, "stream", keep_open=True)["id"]
    resumed = c.post(f"/api/jobs/{jid}/resume")
    assert resumed.status_code == 409
    assert "is not paused" in resumed.json()["detail"]

    early = c.get(f"/api/jobs/{jid}/result")
    assert early.status_code == 409
    assert "not ready" in early.json()["detail"]

    c.post(f"/api/jobs/{jid}/pause")  # a paused job does not complete, even with its input closed
    c.post(f"/api/jobs/{jid}/close")
    after_close = send(c, jid, "clean.items", [1])
    assert after_close.status_code == 409
    assert after_close.json()["accepted"] == 0
    assert "input is closed" in after_close.json()["detail"]

    c.post(f"/api/jobs/{jid}/resume")
    finished_result(c, jid)
    assert c.post(f"/api/jobs/{jid}/pause").status_code == 409
    assert c.post(f"/api/jobs/{jid}/resume").status_code == 409


def test_unknown_job_or_flow_is_404(live: Live) -> None:
    c = live.client
    for method, path in [
        ("GET", "/api/jobs/nope"),
        ("GET", "/api/jobs/nope/result"),
        ("GET", "/api/jobs/nope/queues"),
        ("GET", "/api/jobs/nope/dead-letters"),
        ("GET", "/api/jobs/nope/events"),
        ("POST", "/api/jobs/nope/close"),
        ("POST", "/api/jobs/nope/pause"),
        ("POST", "/api/jobs/nope/resume"),
        ("POST", "/api/jobs/nope/cancel"),
        ("POST", "/api/jobs/nope/input"),
        ("GET", "/api/flows/nope"),
        ("GET", "/api/flows/nope/queues"),
    ]:
        body = {"slot": "clean.items", "items": [1]} if path.endswith("/input") else None
        response = c.request(method, path, json=body)
        assert response.status_code == 404, (method, path)
        assert "nope" in response.json()["detail"]
    missing = c.post("/api/jobs", json={"flow": "nope"})
    assert missing.status_code == 404
    assert "stream" in missing.json()["detail"]  # names the flows there are


@pytest.mark.parametrize("action", ["cancel", "pause", "resume", "close"])
def test_changing_a_finished_job_is_409_for_every_action(live: Live, action: str) -> None:
    c = live.client
    jid = start_job(c, "stream", keep_open=True)["id"]
    assert c.post(f"/api/jobs/{jid}/cancel").status_code == 200
    again = c.post(f"/api/jobs/{jid}/{action}")
    assert again.status_code == 409
    assert again.json()["detail"].startswith(f"job {jid} is cancelled; it cannot be ")
    assert c.get(f"/api/jobs/{jid}").json()["status"] == "cancelled"
