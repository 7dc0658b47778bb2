"""``/openapi.json`` says what the server does: each path's methods in a ``405``'s ``Allow``,
the runtime caps as ``maximum``, the shape of each event of an event stream (schemathesis
ST205, ST202 and ST108)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.server.conftest import Live, live_server


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_server(max_wait_s=2.5, max_send_timeout_s=1.5) as server:
        yield server


def test_a_405_allows_every_method_the_schema_documents_for_the_path(live: Live) -> None:
    """Starlette's 405 named the methods of the first route of the path only: ``Allow: POST``
    for ``/api/jobs/{job_id}/breakpoints``, which answers ``GET`` too. (A URL that two
    templates match, ``/api/store/jobs/batch`` and ``/api/store/jobs/{job_id}``, is answered
    for the methods of both.)"""
    paths = live.client.get("/openapi.json").json()["paths"]
    templates = {path: re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$") for path in paths}
    wrong = {}
    for path in paths:
        url = path.replace("{", "").replace("}", "")  # any value for each parameter
        documented = {m.upper() for p, r in templates.items() if r.match(url) for m in paths[p]}
        answer = live.client.request("OPTIONS", url)
        assert answer.status_code == 405, (path, answer.status_code)
        allowed = {m.strip() for m in answer.headers["allow"].split(",")} - {"HEAD"}
        if allowed != documented:
            wrong[path] = (sorted(allowed), sorted(documented))
    assert wrong == {}, wrong


def test_the_schema_states_this_servers_caps_and_the_server_keeps_to_them(live: Live) -> None:
    schema = live.client.get("/openapi.json").json()
    for path in ("/api/jobs/{job_id}/result", "/api/jobs/{job_id}/debug"):
        [wait] = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "wait_s"]
        assert wait["schema"]["maximum"] == 2.5, path
    for path in ("/api/jobs/{job_id}/debug/step", "/api/jobs/{job_id}/debug/step-into"):
        [wait] = [p for p in schema["paths"][path]["post"]["parameters"] if p["name"] == "wait_s"]
        assert wait["schema"]["maximum"] == 2.5, path
    timeout = schema["components"]["schemas"]["SendItems"]["properties"]["timeout_s"]
    assert timeout["maximum"] == 1.5 and timeout["default"] == 1.5

    job = live.client.post("/api/jobs", json={"flow": "stream", "keep_open": True}).json()["id"]
    # no timeout_s: the default (5 s) is over this server's cap, so the cap is used, not a 422
    sent = live.client.post(f"/api/jobs/{job}/input", json={"slot": "clean.items", "items": ["a"]})
    assert sent.status_code == 202, sent.text
    at_most = {"slot": "clean.items", "items": ["b"], "timeout_s": 1.5}
    assert live.client.post(f"/api/jobs/{job}/input", json=at_most).status_code == 202
    over = live.client.post(f"/api/jobs/{job}/input", json={**at_most, "timeout_s": 1.6})
    assert over.status_code == 422 and "max_send_timeout_s" in over.text
    assert live.client.get(f"/api/jobs/{job}/result", params={"wait_s": 2.6}).status_code == 422
    assert live.client.post(f"/api/jobs/{job}/close").status_code == 200
    assert live.client.get(f"/api/jobs/{job}/result", params={"wait_s": 2.5}).status_code == 200


def test_each_event_of_a_stream_matches_the_schema(live: Live) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operation = schema["/api/jobs/{job_id}/events"]["GET"]
    job = live.client.post("/api/jobs", json={"flow": "stream", "inputs": {"clean.items": ["a"]}}).json()
    assert live.client.get(f"/api/jobs/{job['id']}/result", params={"wait_s": 2.5}).status_code == 200
    case = operation.Case(path_parameters={"job_id": job["id"]})
    response = case.call(base_url=live.url, timeout=10)
    assert response.status_code == 200 and "event: end" in response.text
    case.validate_response(response, checks=[response_schema_conformance])
