"""Key guessing is bounded per client address on every way in: bad ``Bearer`` keys on any
``/api`` route and bad keys at ``/ui/login`` share one budget (``WEIRFLOW_LOGIN_FAILURES``
within ``WEIRFLOW_LOGIN_WINDOW_S``), then ``429`` with ``Retry-After``; ``X-Forwarded-For``
picks the address only from ``WEIRFLOW_FORWARDED_ALLOW_IPS``."""

from __future__ import annotations

import httpx

from tests.server.conftest import ADMIN_KEY, READ_KEY, live_server

KEYS = f"{ADMIN_KEY}:admin,{READ_KEY}:read"


def _bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def _refused(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert "too many bad keys" in answer.json()["detail"]


def test_bad_bearer_keys_on_any_api_route_end_in_429_even_for_a_good_key() -> None:
    with live_server(api_keys=KEYS, login_failures=3, login_window_s=60) as server:
        c = server.client
        assert c.get("/api/flows", headers=_bearer("guess1")).status_code == 401
        assert c.post("/api/jobs", json={"flow": "stream"}, headers=_bearer("guess2")).status_code == 401
        assert c.get("/metrics", headers=_bearer("guess3")).status_code == 401
        _refused(c.get("/api/jobs", headers=_bearer("guess4")))
        _refused(c.get("/api/flows", headers=_bearer(ADMIN_KEY)))  # a good guess now tells nothing
        _refused(c.post("/ui/login", json={"key": ADMIN_KEY}))  # one budget for both ways in
        assert c.get("/healthz").json() == {"status": "ok"}  # (needs no key)


def test_bad_keys_at_the_login_count_against_the_api_too() -> None:
    with live_server(api_keys=KEYS, login_failures=2, login_window_s=60) as server:
        for _ in range(2):
            assert server.client.post("/ui/login", json={"key": "guess"}).status_code == 401
        _refused(server.client.get("/api/flows", headers=_bearer(READ_KEY)))


def test_good_keys_are_not_counted() -> None:
    with live_server(api_keys=KEYS, login_failures=2, login_window_s=60) as server:
        for _ in range(5):
            assert server.client.get("/api/flows", headers=_bearer(READ_KEY)).status_code == 200
        assert server.client.get("/api/flows", headers=_bearer("typo")).status_code == 401
        assert server.client.get("/api/flows", headers=_bearer(ADMIN_KEY)).status_code == 200


def test_x_forwarded_for_does_not_give_a_local_client_new_addresses_by_default() -> None:
    with live_server(api_keys=KEYS, login_failures=3, login_window_s=60) as server:
        for i in range(3):
            fake = {"X-Forwarded-For": f"10.0.0.{i}"}
            assert server.client.get("/api/flows", headers=_bearer("guess", **fake)).status_code == 401
        _refused(server.client.get("/api/flows", headers=_bearer("guess", **{"X-Forwarded-For": "10.0.0.9"})))
        _refused(server.client.post("/ui/login", json={"key": "g"}, headers={"X-Forwarded-For": "10.0.1.1"}))


def test_behind_a_listed_proxy_each_forwarded_address_has_its_own_budget() -> None:
    with live_server(
        api_keys=KEYS, login_failures=3, login_window_s=60, forwarded_allow_ips="127.0.0.1"
    ) as server:
        guesser = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(3):
            assert server.client.get("/api/flows", headers=_bearer("guess", **guesser)).status_code == 401
        _refused(server.client.get("/api/flows", headers=_bearer(ADMIN_KEY, **guesser)))
        other = {"X-Forwarded-For": "198.51.100.2"}
        assert server.client.get("/api/flows", headers=_bearer("typo", **other)).status_code == 401
        assert server.client.get("/api/flows", headers=_bearer(ADMIN_KEY, **other)).status_code == 200
