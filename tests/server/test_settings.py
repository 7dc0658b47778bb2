"""Settings from ``WEIRFLOW_*``: API keys parsed and checked, open servers on loopback only."""

from __future__ import annotations

import pytest

from weirflow.server.settings import Role, Settings, SettingsError, is_loopback, load_settings, parse_api_keys


def test_api_keys_parse() -> None:
    assert parse_api_keys("k1:admin, k2:read") == {"k1": Role.ADMIN, "k2": Role.READ}
    assert parse_api_keys("") == {}
    assert parse_api_keys("a:b:admin") == {"a:b": Role.ADMIN}  # the role is after the last colon
    assert parse_api_keys({"k": "read"}) == {"k": Role.READ}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("k1", "entry 1 must look like KEY:ROLE"),
        ("k1:admin,", "entry 2 must look like KEY:ROLE"),
        (":admin", "entry 1 must look like KEY:ROLE"),
        ("k1:root", "entry 1: role 'root' is not admin or read"),
        ("k1:admin,k1:read", "entry 2: the same key is listed twice"),
        ("a b:admin", "entry 1: a key must be printable and contain no whitespace"),
    ],
)
def test_malformed_api_keys_are_refused_with_a_clear_message(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_api_keys(value)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIRFLOW_API_KEYS", "secret:admin")
    monkeypatch.setenv("WEIRFLOW_MAX_BODY_BYTES", "100")
    monkeypatch.setenv("WEIRFLOW_HOST", "0.0.0.0")
    settings = Settings()
    assert settings.api_keys == {"secret": Role.ADMIN}
    assert settings.max_body_bytes == 100
    assert settings.host == "0.0.0.0"
    assert "secret" not in repr(settings)


def test_load_settings_reports_each_problem_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIRFLOW_API_KEYS", "nokey")
    monkeypatch.setenv("WEIRFLOW_MAX_BODY_BYTES", "-1")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert "WEIRFLOW_API_KEYS: entry 1 must look like KEY:ROLE" in message
    assert "WEIRFLOW_MAX_BODY_BYTES: Input should be greater than or equal to 0" in message


def test_an_open_server_only_on_loopback() -> None:
    assert Settings(host="127.0.0.1").host == "127.0.0.1"
    assert Settings(host="::1").host == "::1"
    assert Settings(host="0.0.0.0", api_keys="k:admin").host == "0.0.0.0"
    with pytest.raises(SettingsError, match=r"refusing to listen on 0\.0\.0\.0 without API keys"):
        load_settings(host="0.0.0.0")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("localhost", True), ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True)],
        *[("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.com", False), ("", False)],
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
