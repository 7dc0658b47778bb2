"""Breakpoint routes: create, list, change, remove, batches with partial failures, and the
answers for bad conditions, unknown targets and unknown breakpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.conftest import Live, finished_result, live_server, read_events, send, start_job

DEBUGGED = "tests.server.flows.debugged"


@pytest.fixture(scope="module")
def dbg() -> Iterator[Live]:
    with live_server(flows=DEBUGGED) as server:
        yield server


@pytest.fixture
def api(dbg: Live) -> Iterator[str]:
    """A running streaming job of ``orders``; its API path."""
    jid = start_job(dbg.client, "orders", keep_open=True)["id"]
    yield f"/api/jobs/{jid}"
    dbg.client.post(f"/api/jobs/{jid}/cancel")


def test_create_list_change_remove(dbg: Live, api: str) -> None:
    c = dbg.client
    created = c.post(f"{api}/breakpoints", json={"kind": "routine", "target": "enrich", "once": True})
    assert created.status_code == 201
    bp = created.json()
    assert (bp["id"], bp["condition"], bp["once"], bp["scope"], bp["enabled"]) == (
        "bp1",
        None,
        True,
        "job",
        True,
    )
    slot = c.post(
        f"{api}/breakpoints",
        json={"kind": "slot", "target": "sink.items", "condition": "size(item) > 1", "scope": "routine"},
    ).json()
    assert [b["id"] for b in c.get(f"{api}/breakpoints").json()] == ["bp1", slot["id"]]

    changed = c.patch(f"{api}/breakpoints/bp1", json={"enabled": False, "condition": "item.amount > 3"})
    assert changed.status_code == 200
    assert (changed.json()["enabled"], changed.json()["condition"], changed.json()["once"]) == (
        False,
        "item.amount > 3",
        True,
    )
    cleared = c.patch(f"{api}/breakpoints/bp1", json={"condition": "", "once": False}).json()
    assert (cleared["condition"], cleared["once"], cleared["enabled"]) == (None, False, False)

    assert c.delete(f"{api}/breakpoints/bp1").status_code == 204
    assert [b["id"] for b in c.get(f"{api}/breakpoints").json()] == [slot["id"]]
    gone = c.delete(f"{api}/breakpoints/bp1")
    assert gone.status_code == 404
    assert gone.json()["detail"] == f"job {api.rsplit('/', 1)[1]} has no breakpoint 'bp1' (breakpoints: bp2)"
    assert c.patch(f"{api}/breakpoints/bp9", json={"enabled": True}).status_code == 404


def test_a_bad_condition_is_422_with_its_position(dbg: Live, api: str) -> None:
    c = dbg.client
    bad = c.post(f"{api}/breakpoints", json={"kind": "routine", "target": "enrich", "condition": "item.n >"})
    assert bad.status_code == 422
    body = bad.json()
    assert (body["line"], body["column"]) == (1, 9)
    assert body["detail"].startswith("body.condition: invalid condition 'item.n >' at line 1, column 9")
    assert body["errors"][0]["loc"] == ["body", "condition"]

    bp = c.post(f"{api}/breakpoints", json={"kind": "routine", "target": "enrich"}).json()
    patched = c.patch(f"{api}/breakpoints/{bp['id']}", json={"condition": "(("})
    assert patched.status_code == 422
    assert patched.json()["line"] == 1 and patched.json()["errors"][0]["loc"] == ["body", "condition"]
    blank = c.patch(f"{api}/breakpoints/{bp['id']}", json={"condition": "   "})
    assert blank.status_code == 422 and "non-empty" in blank.json()["detail"]
    assert c.get(f"{api}/breakpoints").json()[0]["condition"] is None  # unchanged


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [
        ("routine", "nope", "flow 'orders' has no routine 'nope'"),
        ("slot", "intake.nope", "flow 'orders' has no slot 'intake.nope'"),
        ("event", "intake.items", "flow 'orders' has no event 'intake.items'"),
        (
            "connection",
            "intake.out -> sink.items",
            "flow 'orders' has no connection 'intake.out -> sink.items'",
        ),
        ("connection", "intake.out", "connection target 'intake.out' must look like 'a.event -> b.slot'"),
    ],
)
def test_an_unknown_target_is_422(dbg: Live, api: str, kind: str, target: str, message: str) -> None:
    response = dbg.client.post(f"{api}/breakpoints", json={"kind": kind, "target": target})
    assert response.status_code == 422
    assert response.json()["detail"] == f"body.target: {message}"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"kind": "walrus", "target": "enrich"}, "body.kind"),
        ({"kind": "routine", "target": "enrich", "scope": "everything"}, "body.scope"),
        ({"kind": "routine", "target": ""}, "body.target"),
        ({"kind": "routine", "target": "enrich", "colour": "red"}, "body.colour"),
        ({"kind": "routine", "target": "enrich", "condition": "1 + " * 2000}, "body.condition"),
    ],
)
def test_request_validation(dbg: Live, api: str, body: dict[str, Any], path: str) -> None:
    response = dbg.client.post(f"{api}/breakpoints", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"{path}: ")


def test_batches_report_partial_failures(dbg: Live, api: str) -> None:
    c = dbg.client
    specs: list[Any] = [
        {"kind": "routine", "target": "enrich"},
        {"kind": "slot", "target": "nope.items"},
        {"kind": "event", "target": "intake.out", "condition": "item.n >"},
        "not an object",
        {"kind": "walrus", "target": "x"},
        {"kind": "connection", "target": "intake.out -> enrich.items", "once": True},
    ]
    response = c.post(f"{api}/breakpoints/batch", json={"breakpoints": specs})
    assert response.status_code == 200
    body = response.json()
    assert [b["target"] for b in body["created"]] == ["enrich", "intake.out -> enrich.items"]
    first, second = (b["id"] for b in body["created"])
    failed = {f["index"]: f for f in body["failed"]}
    assert sorted(failed) == [1, 2, 3, 4]
    assert failed[1]["error"] == "flow 'orders' has no slot 'nope.items'"
    assert (failed[2]["line"], failed[2]["column"]) == (1, 9)
    assert "valid dictionary" in failed[3]["error"]
    assert failed[4]["error"].startswith("kind: Input should be")
    assert failed[1]["line"] is None

    removed = c.post(f"{api}/breakpoints/batch-delete", json={"ids": [first, "bp9", second]}).json()
    assert removed == {
        "removed": [first, second],
        "failed": [{"index": 1, "error": "no breakpoint 'bp9'", "line": None, "column": None}],
    }
    assert c.get(f"{api}/breakpoints").json() == []
    assert c.post(f"{api}/breakpoints/batch", json={"breakpoints": "x"}).status_code == 422


def test_a_routine_scope_hit_is_an_event_and_the_job_keeps_running(dbg: Live, api: str) -> None:
    c = dbg.client
    bp = c.post(f"{api}/breakpoints", json={"kind": "routine", "target": "sink", "scope": "routine"}).json()
    with c.stream("GET", f"{api}/events") as response:
        events = read_events(response, stop=lambda e: e.kind == "breakpoint")
        send(c, api.rsplit("/", 1)[1], "intake.items", [{"id": 1, "amount": 1}])
        hit = list(events)[-1]
    assert hit.kind == "breakpoint"
    assert (hit.data["breakpoint"], hit.data["scope"], hit.data["paused"]) == (bp["id"], "routine", False)
    assert hit.data["item"] == {"id": 1, "amount": 1, "checked": True}
    assert c.get(api).json()["status"] == "running"
    view = c.get(f"{api}/debug").json()
    assert (view["status"], view["paused"], view["held"], view["pause_reason"]) == ("running", True, 1, None)
    assert view["queues"]["sink.items"]["paused"] is True
    assert c.post(f"{api}/debug/resume").json()["status"] == "running"
    c.post(f"{api}/close")
    result = finished_result(c, api.rsplit("/", 1)[1])
    assert result["outputs"]["sink.all"] == [[{"id": 1, "amount": 1, "checked": True}]]


def test_a_condition_that_fails_at_run_time_marks_the_breakpoint_and_pauses(dbg: Live, api: str) -> None:
    c = dbg.client
    c.post(
        f"{api}/breakpoints", json={"kind": "routine", "target": "enrich", "condition": "item.missing > 1"}
    )
    send(c, api.rsplit("/", 1)[1], "intake.items", [{"id": 1, "amount": 1}])
    view = c.get(f"{api}/debug", params={"wait_s": 5}).json()
    assert view["location"]["breakpoint"] == "bp1"
    (bp,) = view["breakpoints"]
    assert bp["status"] == "error" and "item.missing > 1" in bp["error"]
    assert c.get(api).json()["pause"]["reason"] == "breakpoint:bp1"


def test_cancelling_a_job_that_holds_an_item_dead_letters_it(dbg: Live, api: str) -> None:
    c = dbg.client
    jid = api.rsplit("/", 1)[1]
    c.post(f"{api}/breakpoints", json={"kind": "connection", "target": "intake.out -> enrich.items"})
    send(c, jid, "intake.items", [{"id": 1, "amount": 1}, {"id": 2, "amount": 2}])
    assert c.get(f"{api}/debug", params={"wait_s": 5}).json()["held"] == 1
    c.post(f"{api}/cancel")
    result = finished_result(c, jid)
    assert [(d["item"]["id"], d["reason"]) for d in result["dead_letters"]] == [
        (1, "job_cancelled"),  # in flight in intake while its emit was held
        (2, "job_cancelled"),
    ]
    view = c.get(f"{api}/debug").json()
    assert (view["status"], view["paused"], view["pause_reason"], view["held"]) == (
        "cancelled",
        False,
        None,
        0,
    )


def test_a_condition_whose_cost_multiplies_is_422_and_the_server_answers(dbg: Live, api: str) -> None:
    c = dbg.client
    ten = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
    nested = f"{ten}.map(a, {ten}.map(b, {ten}.map(c, {ten}.map(d, {ten}.map(e, e))))).size() > 0"
    bad = c.post(f"{api}/breakpoints", json={"kind": "routine", "target": "enrich", "condition": nested})
    assert bad.status_code == 422
    assert "nested inside another" in bad.json()["detail"]
    assert c.get("/healthz").status_code == 200
