"""Stepping over HTTP always answers with where the job stopped: under load through
capacity-1 slots with ``/debug/step``, ``/debug/step-into`` and ``/debug/resume``, and
with a ``blocked`` location where a step cannot go on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.conftest import Live, finished_result, live_server, send, start_job

FLOWS = "tests.debug.flows"
WAIT_S = 10
CONNECTION = "a.out -> b.inp"
MODES = ("step", "step-into", "resume")
STOPS = ("blocked", "idle")


@pytest.fixture(scope="module")
def served() -> Iterator[Live]:
    with live_server(flows=FLOWS) as server:
        yield server


def stopped_at(view: dict[str, Any]) -> dict[str, Any]:
    location: dict[str, Any] | None = view["location"]
    assert location is not None, f"the job did not stop within {WAIT_S}s: {view}"
    assert view["status"] == "paused"
    return location


def debug_under_load(
    live: Live, flow: str, items: int, mode: str, every: int, steps: int
) -> tuple[Counter[str], int]:
    """Debug ``flow`` on ``items`` inputs as ``tests/debug/test_stepping.py`` does, over HTTP.
    Returns the kinds of every stop and how many breakpoint hits to expect: those from
    the first on (the job runs before the breakpoint is added)."""
    c = live.client
    jid = start_job(c, flow, inputs={"a.inp": list(range(items))})["id"]
    api = f"/api/jobs/{jid}"
    bp = c.post(
        f"{api}/breakpoints",
        json={"kind": "connection", "target": CONNECTION, "condition": f"item % {every} == 0"},
    )
    assert bp.status_code == 201, bp.text
    kinds: Counter[str] = Counter()
    first: int | None = None
    while (view := c.get(f"{api}/debug", params={"wait_s": WAIT_S}).json())["status"] != "completed":
        where = stopped_at(view)
        assert where["breakpoint"] == "bp1"
        kinds["hit"] += 1
        first = where["item"] if first is None else first
        if mode != "resume":
            for _ in range(steps):
                answer = c.post(f"{api}/debug/{mode}", params={"wait_s": WAIT_S})
                assert answer.status_code == 200, answer.text
                where = stopped_at(answer.json())
                kinds[where["kind"]] += 1
                if where["kind"] in STOPS:
                    break
        assert c.post(f"{api}/debug/resume").status_code == 200
    result = finished_result(c, jid, wait_s=WAIT_S)
    assert result["status"] == "completed", result
    assert result["outputs"]["c.out"] == list(range(items))
    assert result["dead_letters"] == []
    assert first is not None
    return kinds, (items - first) // every


@pytest.mark.parametrize("mode", MODES)
def test_stepping_over_http_under_load_always_answers_where_it_stopped(served: Live, mode: str) -> None:
    kinds, hits = debug_under_load(served, "chain", 160, mode, every=4, steps=3)
    if mode == "step":  # three steps may take a past the next multiple of 4
        assert hits / 2 <= kinds["hit"] <= hits
    else:
        assert kinds["hit"] == hits
    if mode == "step-into":
        assert kinds["slot"] == 2 * hits and kinds["idle"] == hits


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_stepping_over_http_under_load_of_50000_items(served: Live, mode: str) -> None:
    kinds, hits = debug_under_load(served, "chain_async", 50_000, mode, every=500, steps=5)
    assert kinds["hit"] == hits  # five steps do not reach the next multiple of 500
    if mode == "step":
        assert kinds["routine"] + kinds["event"] + kinds["connection"] == 5 * hits
    elif mode == "step-into":
        assert kinds["slot"] == 2 * hits and kinds["idle"] == hits


def test_a_step_that_cannot_go_on_answers_blocked_with_the_slot(served: Live) -> None:
    c = served.client
    jid = start_job(c, "joined", keep_open=True)["id"]
    api = f"/api/jobs/{jid}"
    c.post(
        f"{api}/breakpoints",
        json={"kind": "connection", "target": "a.out -> j.x", "condition": "item == 'a1'"},
    )
    assert send(c, jid, "a.inp", ["a0", "a1"]).json() == {"accepted": 2}
    assert stopped_at(c.get(f"{api}/debug", params={"wait_s": WAIT_S}).json())["item"] == "a1"
    view = c.post(f"{api}/debug/step", params={"wait_s": WAIT_S}).json()
    assert stopped_at(view) == {
        "breakpoint": None,
        "kind": "blocked",
        "target": "j.x",
        "routine": "a",
        "slot": "j.x",
        "event": None,
        "attempt": 1,
        "item": None,
        "reason": "routine 'j' has no call ready",
    }
    assert view["held"] == 1 and view["queues"]["j.x"]["blocked_emitters"] == 1
    for path, body in (("set-item", {"item": 1}), ("drop-item", {"reason": "x"})):
        refused = c.post(f"{api}/debug/{path}", json=body)
        assert refused.status_code == 409, path
        assert refused.json()["detail"].startswith("no item is held")
    assert c.post(f"{api}/debug/resume").status_code == 200
    assert send(c, jid, "b.inp", ["b0", "b1"]).json() == {"accepted": 2}
    c.post(f"{api}/close")
    assert finished_result(c, jid)["outputs"]["j.out"] == [["a0", "b0"], ["a1", "b1"]]
