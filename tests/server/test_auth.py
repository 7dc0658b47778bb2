"""API keys: 401 without or with a wrong key, 403 for a read key on a mutating route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.conftest import ADMIN_KEY, READ_KEY, Live, live_server
from weirflow.server.auth import role_of
from weirflow.server.settings import Role


@pytest.fixture(scope="module")
def keyed() -> Iterator[Live]:
    # these tests send many bad keys on purpose: a budget they do not reach (test_bad_keys)
    with live_server(api_keys=f"{ADMIN_KEY}:admin,{READ_KEY}:read", login_failures=10_000) as server:
        yield server


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


READ_ROUTES = [
    "/api/flows",
    "/api/flows/stream",
    "/api/flows/stream/queues",
    "/api/jobs",
    "/readyz",
    "/metrics",
]


def test_healthz_needs_no_key(keyed: Live) -> None:
    assert keyed.client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("path", [*READ_ROUTES, "/openapi.json"])
def test_no_key_or_a_wrong_key_is_401(keyed: Live, path: str) -> None:
    for headers in ({}, _bearer("wrong"), _bearer(ADMIN_KEY + "x"), {"Authorization": f"Basic {ADMIN_KEY}"}):
        response = keyed.client.get(path, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["detail"]


@pytest.mark.parametrize("path", [*READ_ROUTES, "/openapi.json"])
def test_read_and_admin_keys_may_read(keyed: Live, path: str) -> None:
    for key in (READ_KEY, ADMIN_KEY):
        assert keyed.client.get(path, headers=_bearer(key)).status_code == 200, (path, key)


def test_a_read_key_cannot_mutate(keyed: Live) -> None:
    c = keyed.client
    refused = c.post("/api/jobs", json={"flow": "stream", "keep_open": True}, headers=_bearer(READ_KEY))
    assert refused.status_code == 403
    assert "admin" in refused.json()["detail"]

    started = c.post("/api/jobs", json={"flow": "stream", "keep_open": True}, headers=_bearer(ADMIN_KEY))
    assert started.status_code == 201
    jid = started.json()["id"]
    for action in ("pause", "resume", "close", "cancel"):
        assert c.post(f"/api/jobs/{jid}/{action}", headers=_bearer(READ_KEY)).status_code == 403
    body = {"slot": "clean.items", "items": [1]}
    assert c.post(f"/api/jobs/{jid}/input", json=body, headers=_bearer(READ_KEY)).status_code == 403
    assert c.post(f"/api/jobs/{jid}/input", json=body, headers=_bearer(ADMIN_KEY)).status_code == 202
    assert c.get(f"/api/jobs/{jid}", headers=_bearer(READ_KEY)).status_code == 200
    assert c.post(f"/api/jobs/{jid}/cancel", headers=_bearer(ADMIN_KEY)).status_code == 200


def test_auth_is_checked_before_the_body(keyed: Live) -> None:
    response = keyed.client.post("/api/jobs", json={"nonsense": 1})
    assert response.status_code == 401


def test_role_of_compares_every_key() -> None:
    keys = {"alpha": Role.ADMIN, "beta": Role.READ}
    assert role_of("alpha", keys) is Role.ADMIN
    assert role_of("beta", keys) is Role.READ
    assert role_of("gamma", keys) is None
    assert role_of("", keys) is None
    assert role_of("alph", keys) is None
    assert role_of("ünïcode", keys) is None


def test_open_server_needs_no_key(live: Live) -> None:
    assert live.client.get("/api/flows").status_code == 200
    assert live.client.get("/openapi.json").status_code == 200
