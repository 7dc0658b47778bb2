"""Bad input never gets a 5xx: 422 names the field path, every 4xx is JSON with ``detail``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.conftest import Live, start_job


def _detail(response: Any) -> str:
    assert response.headers["content-type"] == "application/json"
    detail: str = response.json()["detail"]
    return detail


def test_missing_and_extra_fields_name_their_path(live: Live) -> None:
    response = live.client.post("/api/jobs", json={"flw": "stream"})
    assert response.status_code == 422
    assert _detail(response) == "body.flow: Field required; body.flw: Extra inputs are not permitted"
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "flow"], ["body", "flw"]]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"slot": "clean.items"}, "body.items"),
        ({"slot": "clean.items", "items": "notalist"}, "body.items"),
        ({"slot": "clean.items", "items": [], "timeout_s": -1}, "body.timeout_s"),
        ({"slot": "clean.items", "items": [], "timeout_s": 31}, "body.timeout_s"),  # over the server's cap
        ({"slot": "clean.nope", "items": [1]}, "body.slot"),
        ({"slot": "", "items": [1]}, "body.slot"),
    ],
)
def test_input_validation(live: Live, body: dict[str, Any], path: str) -> None:
    jid = start_job(live.client, "stream", keep_open=True)["id"]
    response = live.client.post(f"/api/jobs/{jid}/input", json=body)
    assert response.status_code == 422, response.text
    assert _detail(response).startswith(f"{path}: ")
    live.client.post(f"/api/jobs/{jid}/cancel")


def test_unknown_input_slot_of_a_new_job(live: Live) -> None:
    response = live.client.post("/api/jobs", json={"flow": "stream", "inputs": {"clean.nope": [1]}})
    assert response.status_code == 422
    assert _detail(response).startswith("body.inputs.clean.nope: flow 'stream' has no slot 'clean.nope'")


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"status": "sleeping"}, "query.status"),
    ],
)
def test_query_validation(live: Live, params: dict[str, Any], path: str) -> None:
    response = live.client.get("/api/jobs", params=params)
    assert response.status_code == 422
    assert _detail(response).startswith(f"{path}: ")


def test_result_wait_is_capped(live: Live) -> None:
    jid = start_job(live.client, "stream", keep_open=True)["id"]
    response = live.client.get(f"/api/jobs/{jid}/result", params={"wait_s": 3600})
    assert response.status_code == 422
    assert _detail(response).startswith("query.wait_s: must be at most 30")
    live.client.post(f"/api/jobs/{jid}/cancel")


@pytest.mark.parametrize(
    "content",
    [b"{", b"[]", b"null", b'{"flow": "stream", "inputs": {"clean.items": 1}}', b"\xff\xfe", b'"x"'],
)
def test_malformed_bodies_are_422(live: Live, content: bytes) -> None:
    response = live.client.post("/api/jobs", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert _detail(response)


def test_unknown_routes_and_methods_are_json(live: Live) -> None:
    missing = live.client.get("/api/nothing")
    assert missing.status_code == 404 and _detail(missing)
    wrong = live.client.delete("/api/jobs")
    assert wrong.status_code == 405 and _detail(wrong)
