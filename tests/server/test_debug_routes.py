"""Debug session routes: inspect, eval, set-state, step-into, the 404/409/422 answers,
auth roles, and sessions forgotten with their jobs."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.server.conftest import (
    ADMIN_KEY,
    READ_KEY,
    Live,
    finished_result,
    live_server,
    read_events,
    send,
    start_job,
)

DEBUGGED = "tests.server.flows.debugged"
ROUTES = [
    ("POST", "breakpoints", {"kind": "routine", "target": "enrich"}),
    ("GET", "breakpoints", None),
    ("POST", "breakpoints/batch", {"breakpoints": []}),
    ("POST", "breakpoints/batch-delete", {"ids": []}),
    ("PATCH", "breakpoints/bp1", {"enabled": True}),
    ("DELETE", "breakpoints/bp1", None),
    ("GET", "debug", None),
    ("POST", "debug/step", None),
    ("POST", "debug/step-into", None),
    ("POST", "debug/resume", None),
    ("POST", "debug/eval", {"expr": "1"}),
    ("POST", "debug/set-item", {"item": 1}),
    ("POST", "debug/drop-item", {"reason": "x"}),
    ("POST", "debug/set-state", {"key": "k", "value": 1, "routine": "enrich"}),
]
HELD_ONLY = [
    r for r in ROUTES if r[1] in ("debug/step", "debug/step-into", "debug/set-item", "debug/drop-item")
]


@pytest.fixture(scope="module")
def dbg() -> Iterator[Live]:
    with live_server(flows=DEBUGGED) as server:
        yield server


@pytest.fixture
def jid(dbg: Live) -> Iterator[str]:
    job_id: str = start_job(dbg.client, "orders", keep_open=True)["id"]
    yield job_id
    dbg.client.post(f"/api/jobs/{job_id}/cancel")


def test_acting_on_the_held_item_when_nothing_is_held_is_409(dbg: Live, jid: str) -> None:
    for method, path, body in HELD_ONLY:
        response = dbg.client.request(method, f"/api/jobs/{jid}/{path}", json=body)
        assert response.status_code == 409, path
        assert response.json()["detail"] == f"nothing is held: job {jid} is not stopped at a breakpoint"


def test_an_unknown_job_is_404_everywhere(dbg: Live) -> None:
    for method, path, body in ROUTES:
        response = dbg.client.request(method, f"/api/jobs/nope/{path}", json=body)
        assert response.status_code == 404, path
        assert response.json()["detail"] == "no job 'nope'"


def test_a_finished_job_can_be_read_not_changed(dbg: Live) -> None:
    c = dbg.client
    jid = start_job(c, "orders", keep_open=True)["id"]
    c.post(f"/api/jobs/{jid}/breakpoints", json={"kind": "routine", "target": "enrich"})
    c.post(f"/api/jobs/{jid}/close")
    assert finished_result(c, jid)["status"] == "completed"
    view = c.get(f"/api/jobs/{jid}/debug", params={"wait_s": 1}).json()
    assert (view["status"], view["paused"], view["location"], view["held"]) == ("completed", False, None, 0)
    assert [b["target"] for b in c.get(f"/api/jobs/{jid}/breakpoints").json()] == ["enrich"]
    assert c.post(f"/api/jobs/{jid}/debug/eval", json={"expr": "2 * 21"}).json() == {"value": 42}
    for method, path, body in ROUTES:
        if method in ("GET",) or path == "debug/eval":
            continue
        response = c.request(method, f"/api/jobs/{jid}/{path}", json=body)
        assert response.status_code == 409, path
        assert response.json()["detail"] == f"job {jid} is completed; the debugger cannot change it"


def test_eval(dbg: Live, jid: str) -> None:
    c = dbg.client
    url = f"/api/jobs/{jid}/debug/eval"
    assert c.post(url, json={"expr": "1 + 2"}).json() == {"value": 3}
    assert c.post(url, json={"expr": "item"}).json() == {"value": None}  # nothing held
    assert c.post(url, json={"expr": "[1, 'a', {'k': true}]"}).json() == {"value": [1, "a", {"k": True}]}
    failed = c.post(url, json={"expr": "item.missing"})
    assert failed.status_code == 422
    assert failed.json()["detail"].startswith("body.expr: condition 'item.missing' failed")
    garbage = c.post(url, json={"expr": "1 +"}).json()
    assert garbage["errors"][0]["loc"] == ["body", "expr"] and garbage["line"] == 1
    for sneaky in ("item.__class__", '"{0.__class__}".format(1)', "__import__('os')"):
        assert c.post(url, json={"expr": sneaky}).status_code == 422, sneaky
    # the CEL binding recurses once per nesting level: size and depth are capped so that
    # an expression cannot overflow the native stack (20,000 levels crash the process)
    assert c.post(url, json={"expr": "1" + " +1" * 199}).json() == {"value": 200}
    deep = c.post(url, json={"expr": "1" + " +1" * 300})
    assert deep.status_code == 422
    assert deep.json()["detail"] == "body.expr: condition has 300 operators; at most 200"
    too_long = c.post(url, json={"expr": "1" + " +1" * 20000})
    assert too_long.status_code == 422
    assert too_long.json()["detail"].startswith("body.expr: String should have at most 2000 characters")


def test_set_state(dbg: Live, jid: str) -> None:
    c = dbg.client
    url = f"/api/jobs/{jid}/debug/set-state"
    ok = c.post(url, json={"key": "limit", "value": {"max": 3}, "routine": "enrich"})
    assert ok.json() == {"routine": "enrich", "state": {"limit": {"max": 3}}}
    missing = c.post(url, json={"key": "k", "value": 1})
    assert missing.status_code == 422
    assert missing.json()["detail"] == (
        "body.routine: give a routine (intake, enrich, sink): nothing is held to take it from"
    )
    unknown = c.post(url, json={"key": "k", "value": 1, "routine": "nope"})
    assert unknown.status_code == 422 and "no such routine" in unknown.json()["detail"]


def test_query_validation(dbg: Live, jid: str) -> None:
    c = dbg.client
    over = c.get(f"/api/jobs/{jid}/debug", params={"wait_s": 31})
    assert over.status_code == 422
    assert over.json()["detail"] == "query.wait_s: must be at most 30 (the server's max_wait_s)"
    slot = c.get(f"/api/jobs/{jid}/debug", params={"slot": "nope"})
    assert slot.status_code == 422 and slot.json()["detail"].startswith("query.slot: ")
    assert c.get(f"/api/jobs/{jid}/debug", params={"limit": -1}).status_code == 422
    view = c.get(f"/api/jobs/{jid}/debug", params={"limit": 0}).json()
    assert view["queued_items"] == {"intake.items": [], "enrich.items": [], "sink.items": []}
    assert set(view["queues"]) == {"intake.items", "enrich.items", "sink.items"}


def test_step_into_stops_where_the_emitted_item_arrives(dbg: Live, jid: str) -> None:
    c = dbg.client
    api = f"/api/jobs/{jid}"
    c.post(f"{api}/breakpoints", json={"kind": "routine", "target": "enrich", "once": True})
    send(c, jid, "intake.items", [{"id": 1, "amount": 5}])
    held = c.get(f"{api}/debug", params={"wait_s": 5}).json()
    assert (held["location"]["kind"], held["location"]["target"]) == ("routine", "enrich")
    assert held["state"] == {} and held["breakpoints"] == []  # once: gone after its hit
    into = c.post(f"{api}/debug/step-into", params={"wait_s": 5}).json()
    where = into["location"]
    assert (where["kind"], where["target"], where["breakpoint"]) == ("slot", "sink.items", None)
    assert where["item"] == {"id": 1, "amount": 5, "checked": True}
    assert into["state"] == {}  # the receiving routine's (sink) state: it has not taken the item yet
    c.post(f"{api}/debug/resume")
    c.post(f"{api}/close")
    assert finished_result(c, jid)["outputs"]["sink.all"] == [[{"id": 1, "amount": 5, "checked": True}]]


def test_read_keys_may_inspect_but_not_change() -> None:
    keys = f"{ADMIN_KEY}:admin,{READ_KEY}:read"
    with live_server(flows=DEBUGGED, api_keys=keys, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as live:
        jid = start_job(live.client, "orders", keep_open=True)["id"]
        with live.new_client(Authorization=f"Bearer {READ_KEY}") as reader, live.new_client() as anonymous:
            for method, path, body in ROUTES:
                url = f"/api/jobs/{jid}/{path}"
                assert anonymous.request(method, url, json=body).status_code == 401, path
                answer = reader.request(method, url, json=body)
                if method == "GET":
                    assert answer.status_code == 200, path
                else:
                    assert answer.status_code == 403, path
                    assert "needs 'admin'" in answer.json()["detail"]
        assert live.client.get(f"/api/jobs/{jid}/breakpoints").json() == []  # nothing changed
        live.client.post(f"/api/jobs/{jid}/cancel")


def test_sessions_are_forgotten_with_their_jobs() -> None:
    with live_server(flows=DEBUGGED, keep_finished_jobs=0) as live:
        c = live.client
        jid = start_job(c, "orders", keep_open=True)["id"]
        c.post(f"/api/jobs/{jid}/breakpoints", json={"kind": "routine", "target": "enrich"})
        assert jid in live.server.app.state.debugger.sessions
        with c.stream("GET", f"/api/jobs/{jid}/events") as response:
            c.post(f"/api/jobs/{jid}/cancel")
            assert list(read_events(response))[-1].kind == "end"  # the job is forgotten right after
        assert jid not in live.server.app.state.debugger.sessions
        assert c.get(f"/api/jobs/{jid}/debug").status_code == 404


def test_a_slot_breakpoint_holds_the_senders_request_until_released(dbg: Live, jid: str) -> None:
    c = dbg.client
    api = f"/api/jobs/{jid}"
    c.post(f"{api}/breakpoints", json={"kind": "slot", "target": "intake.items"})
    with ThreadPoolExecutor(1) as pool, dbg.new_client() as sender:
        sending = pool.submit(send, sender, jid, "intake.items", [{"id": 1, "amount": 5}])
        held = c.get(f"{api}/debug", params={"wait_s": 5}).json()
        assert (held["location"]["kind"], held["location"]["item"]) == ("slot", {"id": 1, "amount": 5})
        assert held["queues"]["intake.items"]["enqueued"] == 0  # held before it is queued
        assert not sending.done()  # the producer (here: the HTTP request) waits
        c.post(f"{api}/debug/resume")
        assert sending.result(timeout=10).json() == {"accepted": 1}
    c.post(f"{api}/close")
    assert finished_result(c, jid)["outputs"]["enrich.out"] == [{"id": 1, "amount": 5, "checked": True}]
