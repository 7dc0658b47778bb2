"""Live events as Server-Sent Events: statuses, queue states, dead letters, reconnects."""

from __future__ import annotations

from tests.server.conftest import Live, SSEvent, live_server, read_events, send, start_job
from tests.server.flows.served import STREAM_CAPACITY


def _events(live: Live, jid: str, last_event_id: int | None = None) -> list[SSEvent]:
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    with live.client.stream("GET", f"/api/jobs/{jid}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(read_events(response))


def test_events_live_then_replayed_after_last_event_id(live: Live) -> None:
    c = live.client
    jid = start_job(c, "stream", keep_open=True)["id"]
    with c.stream("GET", f"/api/jobs/{jid}/events") as response:
        events = read_events(response)
        first = next(events)
        assert (first.id, first.kind, first.data["status"]) == (1, "status", "running")

        c.post(f"/api/jobs/{jid}/pause", json={"reason": "inspect"})
        paused = next(events)
        assert (paused.id, paused.kind) == (2, "status")
        assert paused.data["status"] == "paused" and paused.data["reason"] == "inspect"

        send(c, jid, "clean.items", list(range(STREAM_CAPACITY)))
        near, full = next(events), next(events)
        assert (near.id, near.kind, near.data["slot"], near.data["state"]) == (
            3,
            "queue",
            "clean.items",
            "near_full",
        )
        assert (full.id, full.data["state"]) == (4, "full")
    # disconnected after event 4; what happens meanwhile is kept for the reconnect

    c.post(f"/api/jobs/{jid}/resume")
    c.post(f"/api/jobs/{jid}/close")
    rest = _events(live, jid, last_event_id=4)  # the stream ends after the job's end event
    assert [e.id for e in rest] == list(range(5, 5 + len(rest)))
    assert rest[0].kind == "status" and rest[0].data["status"] == "running"
    assert ("queue", "ok") in [(e.kind, e.data.get("state")) for e in rest]
    assert [(e.kind, e.data["status"]) for e in rest[-2:]] == [("status", "completed"), ("end", "completed")]

    everything = _events(live, jid)
    assert [e.id for e in everything] == list(range(1, rest[-1].id + 1))
    assert [e.data for e in everything[4:]] == [e.data for e in rest]


def test_dead_letters_are_events(live: Live) -> None:
    jid = start_job(live.client, "picky", inputs={"check.items": ["ok", "bad"]})["id"]
    events = _events(live, jid)
    (letter,) = [e for e in events if e.kind == "dead_letter"]
    assert letter.data["slot"] == "check.items" and letter.data["item"] == "bad"
    assert letter.data["reason"] == "handler_failed" and "bad item" in letter.data["error"]
    assert events[-1].kind == "end"


def test_a_reconnect_past_the_ring_buffer_is_told_what_it_missed() -> None:
    with live_server(event_buffer=3) as live:
        jid = start_job(live.client, "picky", inputs={"check.items": ["bad"] * 5})["id"]
        live.client.get(f"/api/jobs/{jid}/result", params={"wait_s": 10})
        # running, 5 dead letters, completed, end: 8 events, the last 3 kept
        events = _events(live, jid)
        assert (events[0].kind, events[0].id, events[0].data) == ("gap", None, {"missed": 5, "after": 0})
        assert [e.id for e in events[1:]] == [6, 7, 8]
        assert [e.id for e in _events(live, jid, last_event_id=6)] == [7, 8]
        assert _events(live, jid, last_event_id=8) == []


def test_streams_end_with_the_jobs_last_events_when_the_server_stops() -> None:
    with live_server() as live:
        c = live.client
        jid = start_job(c, "stream", keep_open=True)["id"]
        c.post(f"/api/jobs/{jid}/pause")
        send(c, jid, "clean.items", ["queued"])
        with c.stream("GET", f"/api/jobs/{jid}/events") as response:
            events = read_events(response)
            assert [next(events).kind for _ in range(2)] == ["status", "status"]  # running, paused
            live.server.should_exit = True
            tail = list(events)
    assert [(e.kind, e.data.get("status") or e.data.get("reason")) for e in tail] == [
        ("status", "cancelled"),
        ("dead_letter", "job_cancelled"),
        ("end", "cancelled"),
    ]


def test_a_bad_last_event_id_is_422(live: Live) -> None:
    jid = start_job(live.client, "picky", keep_open=True)["id"]
    response = live.client.get(f"/api/jobs/{jid}/events", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 422
    assert "header.Last-Event-ID" in response.json()["detail"]
    live.client.post(f"/api/jobs/{jid}/cancel")
