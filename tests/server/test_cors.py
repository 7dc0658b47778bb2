"""CORS: no cross-origin call unless ``WEIRFLOW_CORS_ORIGINS`` lists the origin."""

from __future__ import annotations

import pytest

from tests.server.conftest import ADMIN_KEY, live_server
from weirflow.server import SettingsError, load_settings

ALLOWED = "https://app.example.com"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}


def test_no_origin_is_allowed_by_default() -> None:
    with live_server() as live:
        pre = live.client.options("/api/jobs", headers={"Origin": ALLOWED, **PREFLIGHT})
        assert "access-control-allow-origin" not in pre.headers
        got = live.client.get("/api/jobs", headers={"Origin": ALLOWED})
        assert got.status_code == 200 and "access-control-allow-origin" not in got.headers


def test_a_listed_origin_gets_its_preflight_answered_and_others_do_not() -> None:
    keys = f"{ADMIN_KEY}:admin"
    with live_server(cors_origins=f"{ALLOWED},http://localhost:3000", api_keys=keys) as live:
        pre = live.client.options("/api/jobs", headers={"Origin": ALLOWED, **PREFLIGHT})
        assert pre.status_code == 200  # answered before auth: a preflight carries no key
        assert pre.headers["access-control-allow-origin"] == ALLOWED
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        other = live.client.options("/api/jobs", headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        bare = live.client.get("/api/jobs", headers={"Origin": ALLOWED})
        assert bare.status_code == 401  # CORS never replaces the key
        auth = {"Origin": ALLOWED, "Authorization": f"Bearer {ADMIN_KEY}"}
        ok = live.client.get("/api/jobs", headers=auth)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ALLOWED


@pytest.mark.parametrize("bad", ["app.example.com", "https://a.example/path", "ftp://a.example", "https://"])
def test_a_malformed_origin_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(SettingsError, match="WEIRFLOW_CORS_ORIGINS: entry 1"):
        load_settings(cors_origins=bad)
