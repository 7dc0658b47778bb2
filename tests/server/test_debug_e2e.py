"""Debugging a streaming job through the API, end to end: a conditional connection
breakpoint hits, the held item is inspected, edited and stepped past, another one
is dropped, and every item sent either arrives or is dead-lettered by the debugger."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.conftest import Live, finished_result, live_server, read_events, send, start_job
from tests.server.flows.debugged import INTAKE_CAPACITY

DEBUGGED = "tests.server.flows.debugged"
CONNECTION = "intake.out -> enrich.items"


@pytest.fixture(scope="module")
def dbg() -> Iterator[Live]:
    with live_server(flows=DEBUGGED) as server:
        yield server


def order(n: int, amount: int) -> dict[str, Any]:
    return {"id": n, "amount": amount}


def test_debugging_a_streaming_job_end_to_end(dbg: Live) -> None:
    c = dbg.client
    jid = start_job(c, "orders", keep_open=True)["id"]
    api = f"/api/jobs/{jid}"
    created = c.post(
        f"{api}/breakpoints",
        json={"kind": "connection", "target": CONNECTION, "condition": "item.amount >= 100"},
    )
    assert created.status_code == 201, created.text
    bp = created.json()
    assert bp == {
        "id": bp["id"],
        "kind": "connection",
        "target": CONNECTION,
        "condition": "item.amount >= 100",
        "enabled": True,
        "once": False,
        "scope": "job",
        "hit_count": 0,
        "status": "ok",
        "error": None,
    }

    # send items until the breakpoint hits; the event stream says when
    first = [order(1, 5), order(2, 7), order(3, 150), order(4, 9), order(5, 200)]
    with c.stream("GET", f"{api}/events") as response:
        events = read_events(response, stop=lambda e: e.kind == "breakpoint")
        assert send(c, jid, "intake.items", first).json() == {"accepted": len(first)}
        hit = list(events)[-1]
    assert hit.kind == "breakpoint"
    assert {k: hit.data[k] for k in ("breakpoint", "kind", "target", "routine", "item", "scope")} == {
        "breakpoint": bp["id"],
        "kind": "connection",
        "target": CONNECTION,
        "routine": "intake",
        "item": order(3, 150),
        "scope": "job",
    }
    job = c.get(api).json()
    assert job["status"] == "paused" and job["pause"]["reason"] == f"breakpoint:{bp['id']}"

    # inspect: the held item, what is queued behind it
    view = c.get(f"{api}/debug", params={"wait_s": 5}).json()
    assert view["paused"] and view["held"] == 1 and view["pause_reason"] == f"breakpoint:{bp['id']}"
    assert view["location"] == {
        "breakpoint": bp["id"],
        "kind": "connection",
        "target": CONNECTION,
        "routine": "intake",
        "slot": "enrich.items",
        "event": "intake.out",
        "attempt": 1,
        "item": order(3, 150),
        "reason": None,
    }
    assert view["queued_items"]["intake.items"] == [order(4, 9), order(5, 200)]
    assert view["queues"]["intake.items"]["in_flight"] == 1
    assert view["breakpoints"][0]["hit_count"] == 1
    one = c.get(f"{api}/debug", params={"slot": "intake.items", "limit": 1}).json()
    assert one["queued_items"] == {"intake.items": [order(4, 9)]}
    assert c.post(f"{api}/debug/eval", json={"expr": "item.amount * 2"}).json() == {"value": 300}

    # edit the held item, then step: the next point of intake is its next handler call
    edited = {**order(3, 99), "note": "edited"}
    location = c.post(f"{api}/debug/set-item", json={"item": edited}).json()
    assert location["item"] == edited
    stepped = c.post(f"{api}/debug/step", params={"wait_s": 5}).json()
    assert stepped["location"] == {
        "breakpoint": None,
        "kind": "routine",
        "target": "intake",
        "routine": "intake",
        "slot": "intake.items",
        "event": None,
        "attempt": 1,
        "item": order(4, 9),
        "reason": None,
    }
    assert stepped["paused"] and stepped["pause_reason"] == "step"
    # the edited item went on (enrich is paused: it may not have taken orders 1 and 2 yet)
    assert c.get(f"{api}/debug").json()["queued_items"]["enrich.items"][-1] == edited

    # drop that one; the job stays paused, so the intake slot fills up meanwhile
    dropped = c.post(f"{api}/debug/drop-item", json={"reason": "unwanted"}).json()
    assert dropped["location"] is None and dropped["held"] == 0 and dropped["paused"]
    more = [order(6, 1), order(7, 2), order(8, 3)]
    assert send(c, jid, "intake.items", more).json() == {"accepted": 3}
    resumed = c.post(f"{api}/debug/resume")
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "running"
    assert resumed.json()["warnings"] == [f"slot intake.items is near full (4/{INTAKE_CAPACITY}, 80%)"]

    # the breakpoint is still there: order 5 hits it too
    again = c.get(f"{api}/debug", params={"wait_s": 5}).json()
    assert again["location"]["item"] == order(5, 200)
    assert again["breakpoints"][0]["hit_count"] == 2
    state = c.post(f"{api}/debug/set-state", json={"key": "note", "value": "seen", "routine": "enrich"})
    assert state.json()["routine"] == "enrich" and state.json()["state"]["note"] == "seen"
    assert c.delete(f"{api}/breakpoints/{bp['id']}").status_code == 204
    assert c.post(f"{api}/debug/resume").json()["status"] == "running"
    assert c.post(f"{api}/close").status_code == 200

    result = finished_result(c, jid)
    arrived = [{**o, "checked": True} for o in [order(1, 5), order(2, 7), edited, order(5, 200), *more]]
    assert result["status"] == "completed"
    assert result["outputs"] == {"enrich.out": arrived, "sink.all": [arrived]}
    assert [(d["slot"], d["item"], d["reason"]) for d in result["dead_letters"]] == [
        ("intake.items", order(4, 9), "debugger:unwanted")
    ]
    # every item sent arrived (order 3 as edited) or was dead-lettered by the debugger
    sent = {o["id"] for o in first + more}
    assert {o["id"] for o in arrived} | {d["item"]["id"] for d in result["dead_letters"]} == sent

    metrics = c.get("/metrics").text
    assert f'weirflow_breakpoint_hits_total{{breakpoint="{bp["id"]}",flow="orders"}} 2.0' in metrics
