"""DNS rebinding: a server without API keys answers only to loopback host names (and the
names of ``WEIRFLOW_ALLOWED_HOSTS``); a page whose own name was re-pointed at 127.0.0.1 is
refused even though its browser calls it same-origin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.conftest import ADMIN_KEY, Live, live_server
from weirflow.server import Settings, SettingsError, load_settings
from weirflow.server.hosts import host_allowed, host_name

REBOUND = {"Sec-Fetch-Site": "same-origin"}  # what the browser sends after a rebinding


@pytest.fixture(scope="module")
def open_server() -> Iterator[Live]:
    with live_server() as server:
        yield server


def _port(live: Live) -> int:
    return int(live.url.rsplit(":", 1)[1])


def test_a_rebound_page_cannot_start_or_read_jobs() -> None:
    with live_server() as server:
        _refused_for_a_rebound_page(server)


def _refused_for_a_rebound_page(open_server: Live) -> None:
    port = _port(open_server)
    host = {"Host": f"evil.test:{port}", "Origin": f"http://evil.test:{port}", **REBOUND}
    started = open_server.client.post("/api/jobs", json={"flow": "stream", "keep_open": True}, headers=host)
    assert started.status_code == 421
    assert "evil.test" in started.json()["detail"] and "WEIRFLOW_ALLOWED_HOSTS" in started.json()["detail"]
    for path in ("/api/jobs", "/api/flows", "/metrics", "/ui", "/healthz"):
        assert open_server.client.get(path, headers=host).status_code == 421, path
    assert open_server.client.get("/api/jobs").json()["total"] == 0  # nothing was started


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "LOCALHOST", "localhost."])
def test_loopback_names_with_any_port_are_served(open_server: Live, name: str) -> None:
    for host in (name, f"{name}:{_port(open_server)}", f"{name}:1"):
        answer = open_server.client.get("/api/flows", headers={"Host": host, **REBOUND})
        assert answer.status_code == 200, host


@pytest.mark.parametrize("host", ["", "localhost:x", "[::1", "127.0.0.1:80:80"])
def test_a_missing_or_malformed_host_is_400(open_server: Live, host: str) -> None:
    answer = open_server.client.get("/api/flows", headers={"Host": host})
    assert answer.status_code == 400 and "Host" in answer.json()["detail"]


def test_allowed_hosts_admit_a_proxys_public_name_and_nothing_else() -> None:
    with live_server(allowed_hosts="app.example.com,*.internal.example") as server:
        for host in ("app.example.com", "APP.example.com:443", "a.b.internal.example", "127.0.0.1"):
            assert server.client.get("/api/flows", headers={"Host": host}).status_code == 200, host
        for host in ("evil.test", "example.com", "internal.example.evil", "xapp.example.com"):
            assert server.client.get("/api/flows", headers={"Host": host}).status_code == 421, host


def test_with_keys_any_host_is_served_unless_names_are_listed() -> None:
    bearer = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with live_server(api_keys=f"{ADMIN_KEY}:admin") as server:
        assert (
            server.client.get("/api/flows", headers={"Host": "weirflow.example", **bearer}).status_code == 200
        )
    with live_server(api_keys=f"{ADMIN_KEY}:admin", allowed_hosts="weirflow.example") as server:
        assert (
            server.client.get("/api/flows", headers={"Host": "weirflow.example", **bearer}).status_code == 200
        )
        assert server.client.get("/api/flows", headers={"Host": "other.example", **bearer}).status_code == 421


def test_a_star_allows_any_host() -> None:
    with live_server(allowed_hosts="*") as server:
        assert server.client.get("/api/flows", headers={"Host": "evil.test"}).status_code == 200


def test_allowed_hosts_come_from_the_environment_and_bad_entries_name_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEIRFLOW_ALLOWED_HOSTS", "A.example.com, *.b.example ,10.0.0.5,[fd00::1]")
    assert Settings().allowed_hosts == ("a.example.com", "*.b.example", "10.0.0.5", "fd00::1")
    for bad in ("https://a.example.com", "a.example.com:8000", "a.*.example", "a b"):
        monkeypatch.setenv("WEIRFLOW_ALLOWED_HOSTS", bad)
        with pytest.raises(SettingsError, match="WEIRFLOW_ALLOWED_HOSTS: entry 1"):
            load_settings()


def test_host_names_are_read_as_a_browser_sends_them() -> None:
    assert host_name("Evil.Test:8000") == "evil.test"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("localhost.") == "localhost"
    assert host_name("") is None and host_name("a:b") is None
    assert host_allowed("127.9.9.9", ()) and host_allowed("::1", ())
    assert not host_allowed("127.0.0.1.evil.test", ()) and not host_allowed("localhost.evil.test", ())


def test_hosts_once_allowed_or_refused_stay_so_however_many_names_come() -> None:
    """The check remembers allowed ``Host`` values (a bounded set): asking again answers
    the same, refused names are never remembered as allowed, and past the bound names
    are still checked."""
    from weirflow.server.hosts import MAX_REMEMBERED_HOSTS

    with live_server() as server:
        c = server.client
        for _ in range(2):
            for i in range(MAX_REMEMBERED_HOSTS + 10):
                assert c.get("/api/flows", headers={"Host": f"127.0.0.{i % 250}:{i}"}).status_code == 200
            for host in ("evil.test", "evil.test", "localhost:x", "localhost:x"):
                assert c.get("/api/flows", headers={"Host": host}).status_code in (400, 421), host
        assert c.get("/api/flows", headers={"Host": "127.0.0.1:1"}).status_code == 200


# -- IP literals, case and trailing dots: one form on both sides of the comparison ----------


@pytest.mark.parametrize(
    ("entry", "kept"),
    [
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[FD00:0:0::0001]", "fd00::1"),
        ("FD00::1", "fd00::1"),
        ("10.0.0.5.", "10.0.0.5"),
        ("App.Example.COM.", "app.example.com"),
        ("*.Internal.Example.", "*.internal.example"),
    ],
)
def test_an_allowed_entry_is_kept_in_one_form(entry: str, kept: str) -> None:
    assert Settings(allowed_hosts=entry).allowed_hosts == (kept,)


@pytest.mark.parametrize(
    "bad",
    ["[::1", "::1]", "[[::1]]", "[10.0.0.5]", "[fd00::1]:8080", "[app.example.com]", "a.example.com..", "[]"],
)
def test_a_malformed_ip_entry_is_refused(bad: str) -> None:
    with pytest.raises(SettingsError, match=r"WEIRFLOW_ALLOWED_HOSTS: entry 2 \("):
        load_settings(allowed_hosts=f"app.example.com,{bad}")


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("[::1]", "::1"),
        ("[::1]:8080", "::1"),
        ("[FD00:0::0001]:80", "fd00::1"),
        ("10.0.0.5.:80", "10.0.0.5"),
        ("App.Example.COM.:443", "app.example.com"),
    ],
)
def test_a_host_header_is_read_in_the_entries_form(header: str, host: str) -> None:
    assert host_name(header) == host


@pytest.mark.parametrize(
    "header", ["::1", "fd00::1:80", "[10.0.0.5]", "[v1.fe]", "[::1]x", "[::1].", "localhost:\u00b2", "."]
)
def test_a_host_header_that_is_no_host_is_malformed(header: str) -> None:
    assert host_name(header) is None


def test_ip_literals_in_allowed_hosts_and_host_headers_compare_as_addresses() -> None:
    allowed = "[FD00:0::1],10.0.0.5,App.Example.com.,*.internal.example"
    with live_server(allowed_hosts=allowed) as server:
        for host in (
            "[fd00::1]",
            "[fd00::0001]:8080",
            "[FD00:0:0:0:0:0:0:1]:1",
            "10.0.0.5:80",
            "app.example.com.",
            "APP.EXAMPLE.COM:8000",
            "A.Internal.Example.",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",  # loopback too, written as an IPv4-mapped address
        ):
            assert server.client.get("/api/flows", headers={"Host": host}).status_code == 200, host
        for host in ("[fd00::2]", "[fd00::1:0]", "10.0.0.6", "app.example.com..", "[::ffff:10.0.0.5]"):
            assert server.client.get("/api/flows", headers={"Host": host}).status_code == 421, host
        for host in ("fd00::1", "[10.0.0.5]", "[fd00::1"):
            assert server.client.get("/api/flows", headers={"Host": host}).status_code == 400, host


def test_a_wildcard_never_matches_an_ip_address() -> None:
    assert host_allowed("a.0.0.5", ("*.0.0.5",))
    assert not host_allowed("10.0.0.5", ("*.0.0.5",))
