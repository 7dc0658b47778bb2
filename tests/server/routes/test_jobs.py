"""Reading jobs: list with filters and pages, one job, result, dead letters, queues."""

from __future__ import annotations

from tests.server.conftest import Live, finished_result, live_server, send, start_job


def test_list_filters_by_flow_and_status_and_pages(fresh: Live) -> None:
    c = fresh.client
    done = [start_job(c, "stream", inputs={"clean.items": [i]})["id"] for i in range(3)]
    for jid in done:
        finished_result(c, jid)
    open_job = start_job(c, "picky", keep_open=True)["id"]

    everything = c.get("/api/jobs").json()
    assert everything["total"] == 4
    assert [j["id"] for j in everything["items"]] == [*done, open_job]  # oldest first

    by_flow = c.get("/api/jobs", params={"flow": "stream"}).json()
    assert by_flow["total"] == 3 and {j["flow"] for j in by_flow["items"]} == {"stream"}

    running = c.get("/api/jobs", params={"status": "running"}).json()
    assert [j["id"] for j in running["items"]] == [open_job]

    none = c.get("/api/jobs", params={"flow": "picky", "status": "completed"}).json()
    assert none == {"items": [], "total": 0, "limit": 50, "offset": 0}

    page = c.get("/api/jobs", params={"limit": 2, "offset": 1}).json()
    assert [j["id"] for j in page["items"]] == [done[1], done[2]]
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert c.get("/api/jobs", params={"offset": 10}).json()["items"] == []


def test_job_shape(live: Live) -> None:
    c = live.client
    jid = start_job(c, "picky", keep_open=True)["id"]
    job = c.get(f"/api/jobs/{jid}").json()
    assert set(job) == {"id", "flow", "status", "error", "pause", "created_at", "input_closed"}
    assert (job["id"], job["flow"], job["status"], job["error"], job["pause"]) == (
        jid,
        "picky",
        "running",
        None,
        None,
    )
    c.post(f"/api/jobs/{jid}/cancel")


def test_dead_letters_are_paginated_and_in_the_result(live: Live) -> None:
    c = live.client
    items = ["ok", "bad", "fine", "bad", "bad"]
    jid = start_job(c, "picky", inputs={"check.items": items})["id"]
    result = finished_result(c, jid)
    assert result["status"] == "completed"
    assert result["outputs"]["check.out"] == ["ok", "fine"]
    letters = result["dead_letters"]
    assert len(letters) == 3
    assert all(d["slot"] == "check.items" and d["item"] == "bad" for d in letters)
    assert all(d["reason"] == "handler_failed" and "bad item" in d["error"] for d in letters)

    page = c.get(f"/api/jobs/{jid}/dead-letters", params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    rest = c.get(f"/api/jobs/{jid}/dead-letters", params={"limit": 2, "offset": 2}).json()
    assert len(rest["items"]) == 1
    assert page["items"] + rest["items"] == letters


def test_items_that_are_not_json_are_rendered_not_a_500(live: Live) -> None:
    c = live.client
    jid = start_job(c, "picky", inputs={"check.items": ["odd"]})["id"]
    out = finished_result(c, jid)["outputs"]["check.out"]
    assert out[0] == {"$repr": "{1, 2}", "$type": "set"}
    assert out[1] == {"$repr": "nan", "$type": "float"}
    assert out[2] == {"$repr": "b'\\x00'", "$type": "bytes"}
    assert out[3]["$type"] == "object" and out[3]["$repr"].startswith("<object object at")
    assert out[4]["$type"] == "dict"  # a tuple key: the whole mapping is opaque
    assert out[5] == {"ok": [1.5]}


def test_finished_jobs_beyond_the_retention_are_forgotten() -> None:
    with live_server(keep_finished_jobs=2) as server:
        c = server.client
        ids = []
        for i in range(3):
            ids.append(start_job(c, "stream", inputs={"clean.items": [i]})["id"])
            finished_result(c, ids[-1])
        # jobs are forgotten as their results become ready: the oldest is gone by now
        assert c.get(f"/api/jobs/{ids[0]}").status_code == 404
        assert [j["id"] for j in c.get("/api/jobs").json()["items"]] == ids[1:]


def test_queues_of_a_job(live: Live) -> None:
    c = live.client
    jid = start_job(c, "stream", keep_open=True)["id"]
    c.post(f"/api/jobs/{jid}/pause")
    send(c, jid, "clean.items", [1, 2, 3, 4])  # capacity 5: near full from 4 (80 %)
    queues = c.get(f"/api/jobs/{jid}/queues").json()
    assert set(queues["slots"]) == {"clean.items", "sink.items"}
    slot = queues["slots"]["clean.items"]
    assert slot["size"] == 4 and slot["usage"] == 0.8 and slot["state"] == "near_full"
    assert (slot["enqueued"], slot["processed"], slot["in_flight"], slot["dead_lettered"]) == (4, 0, 0, 0)
    assert (queues["full"], queues["near_full"]) == (0, 1)
    assert set(slot) >= {"high_water", "blocked_emitters", "blocked_s", "overflow", "paused", "capacity"}
    c.post(f"/api/jobs/{jid}/cancel")


def test_items_a_durable_job_could_not_hold_are_a_422_here_too(live: Live) -> None:
    """The in-memory routes check items as the durable ones do, so an item that works on one
    works on all: NaN (which Python's JSON parser lets in), integers past 64 bits."""
    c = live.client
    headers = {"content-type": "application/json"}
    for raw, message in [
        (b'{"flow": "stream", "inputs": {"clean.items": [1, NaN]}}', "body.inputs.clean.items.1: nan is not"),
        (
            b'{"flow": "stream", "inputs": {"clean.items": [[-Infinity]]}}',
            "body.inputs.clean.items.0: at [0]",
        ),
        (b'{"flow": "stream", "inputs": {"clean.items": [18446744073709551616]}}', "integer 1844674407370"),
    ]:
        response = c.post("/api/jobs", content=raw, headers=headers)
        assert response.status_code == 422, response.text
        assert message in response.json()["detail"]
    jid = start_job(c, "stream", keep_open=True)["id"]
    body = b'{"slot": "clean.items", "items": ["ok", {"x": NaN}]}'
    refused = c.post(f"/api/jobs/{jid}/input", content=body, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["loc"] == ["body", "items", 1]
    assert c.get(f"/api/jobs/{jid}/queues").json()["slots"]["clean.items"]["enqueued"] == 0  # none of them
    c.post(f"/api/jobs/{jid}/cancel")
