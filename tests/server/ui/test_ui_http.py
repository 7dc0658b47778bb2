"""The web UI over HTTP, without a browser: login, the session cookie, CSRF, roles, what
pages are served with, and the bulk durable routes the UI calls.

A live server with API keys (``tests.server.conftest.live_server``); each test logs in
with ``POST /ui/login`` as a browser would and uses the cookie it got.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import ADMIN_KEY, READ_KEY, Live, live_server, start_job
from weirflow.server.settings import Role
from weirflow.server.ui.sessions import COOKIE, CSRF_HEADER, Sessions

FLOWS = "tests.server.ui.flows"
KEYS = f"{ADMIN_KEY}:admin,{READ_KEY}:read"
STATIC = Path(__file__).resolve().parents[3] / "src/weirflow/server/ui/static"


@pytest.fixture(scope="module")
def keyed() -> Iterator[Live]:
    with live_server(FLOWS, api_keys=KEYS) as server:
        yield server


Login = Callable[[str], tuple[httpx.Client, str]]
Clients = Callable[[], httpx.Client]


@pytest.fixture
def clients(keyed: Live) -> Iterator[Callable[[], httpx.Client]]:
    """New clients of ``keyed`` (no key, no cookie), closed after the test."""
    made: list[httpx.Client] = []

    def new() -> httpx.Client:
        made.append(keyed.new_client())
        return made[-1]

    yield new
    for client in made:
        client.close()


@pytest.fixture
def login(clients: Clients) -> Login:
    """``login(key)``: a client holding a UI session opened with ``key``, and its CSRF token."""

    def open_session(key: str) -> tuple[httpx.Client, str]:
        client = clients()
        response = client.post("/ui/login", json={"key": key})
        assert response.status_code == 200, response.text
        return client, client.get("/ui/session").json()["csrf"]

    return open_session


def test_a_page_without_a_session_redirects_to_the_login(keyed: Live) -> None:
    response = keyed.client.get("/ui/jobs/abc?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Fjobs%2Fabc%3Fx%3D1"
    assert keyed.client.get("/docs").status_code == 303
    assert keyed.client.get("/ui/login").status_code == 200
    assert keyed.client.get("/").headers["location"] == "/ui"


def test_a_wrong_key_is_refused_and_sets_no_cookie(clients: Clients) -> None:
    client = clients()
    response = client.post("/ui/login", json={"key": "not-a-key"})
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid API key"
    assert COOKIE not in response.cookies
    assert client.get("/ui/session").status_code == 401


def test_login_sets_an_httponly_samesite_strict_cookie_that_stands_for_the_key(
    clients: Clients,
) -> None:
    client = clients()
    response = client.post("/ui/login", json={"key": ADMIN_KEY})
    assert response.json() == {"role": "admin", "auth": True}
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert ADMIN_KEY not in cookie  # the cookie is a session token, not the key
    assert client.get("/ui").status_code == 200
    assert client.get("/api/flows").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    info = client.get("/ui/session").json()
    assert info["auth"] is True and info["role"] == "admin" and len(info["csrf"]) > 20


def test_a_changing_call_with_the_cookie_needs_the_csrf_token(login: Login) -> None:
    client, csrf = login(ADMIN_KEY)
    body = {"flow": "stream", "inputs": {"clean.items": ["x"]}}
    before = client.get("/api/jobs").json()["total"]
    refused = client.post("/api/jobs", json=body)
    assert refused.status_code == 403
    assert CSRF_HEADER in refused.json()["detail"]
    wrong = client.post(
        "/api/jobs", json=body, headers={CSRF_HEADER: csrf[:-1] + ("B" if csrf[-1] == "A" else "A")}
    )
    assert wrong.status_code == 403
    assert client.get("/api/jobs").json()["total"] == before  # neither started a job
    ok = client.post("/api/jobs", json=body, headers={CSRF_HEADER: csrf})
    assert ok.status_code == 201


def test_a_read_session_may_read_but_a_post_is_refused_even_with_its_token(login: Login) -> None:
    client, csrf = login(READ_KEY)
    assert client.get("/ui/session").json()["role"] == "read"
    assert client.get("/api/jobs").status_code == 200
    before = client.get("/api/jobs").json()["total"]
    response = client.post("/api/jobs", json={"flow": "stream", "inputs": {}}, headers={CSRF_HEADER: csrf})
    assert response.status_code == 403
    assert response.json()["detail"] == "this API key has role 'read'; POST needs 'admin'"
    assert client.get("/api/jobs").json()["total"] == before


def test_the_event_stream_accepts_the_session_cookie(login: Login, clients: Clients) -> None:
    admin, csrf = login(ADMIN_KEY)
    response = admin.post(
        "/api/jobs", json={"flow": "stream", "inputs": {"clean.items": ["a"]}}, headers={CSRF_HEADER: csrf}
    )
    job_id = response.json()["id"]
    reader, _ = login(READ_KEY)  # EventSource sends no header: the cookie must do
    with reader.stream("GET", f"/api/jobs/{job_id}/events") as events:
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        text = "".join(events.iter_text())
    assert "event: end" in text
    assert clients().get(f"/api/jobs/{job_id}/events").status_code == 401


def test_logout_ends_the_session_on_the_server(login: Login, clients: Clients) -> None:
    client, csrf = login(ADMIN_KEY)
    stolen = client.cookies[COOKIE]
    assert client.post("/ui/logout").status_code == 403  # logout is CSRF-protected too
    assert client.post("/ui/logout", headers={CSRF_HEADER: csrf}).status_code == 200
    replay = clients()
    replay.cookies.set(COOKIE, stolen)
    assert replay.get("/api/flows").status_code == 401
    assert replay.get("/ui").status_code == 303


def test_a_bearer_key_still_works_and_needs_no_csrf_token(keyed: Live) -> None:
    with keyed.new_client(Authorization=f"Bearer {ADMIN_KEY}") as client:
        assert start_job(client, inputs={"clean.items": ["y"]})["flow"] == "stream"


def test_without_keys_the_ui_is_open_and_says_so() -> None:
    with live_server(FLOWS) as live:
        assert live.client.get("/ui/flows").status_code == 200
        assert live.client.get("/docs").status_code == 200
        assert live.client.get("/ui/session").json() == {"auth": False, "role": "admin", "csrf": None}


def test_pages_load_only_this_servers_scripts(login: Login) -> None:
    client, _ = login(ADMIN_KEY)
    for path in ("/ui", "/ui/login", "/docs"):
        response = client.get(path)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert not re.search(r"(src|href)=\"(https?:)?//", response.text), path  # no CDN
        for ref in re.findall(r"(?:src|href)=\"(/ui/static/[^\"]+)\"", response.text):
            assert client.get(ref).status_code == 200, ref  # every asset is vendored


def test_the_browser_code_never_inserts_markup() -> None:
    """Items, names and errors reach the page only as text: no script of the UI's own uses
    an API that parses HTML (the browser tests check a ``<script>`` item shows as text)."""
    sources = sorted(STATIC.joinpath("js").glob("*.js"))
    assert len(sources) >= 10
    for path in sources:
        text = path.read_text()
        for api in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert api not in text, f"{path.name} uses {api}"


def test_sessions_expire_when_idle_and_the_oldest_go_first() -> None:
    now = [0.0]
    sessions = Sessions(idle_s=10, max_sessions=2, clock=lambda: now[0])
    a = sessions.create(Role.ADMIN)
    now[0] = 9
    assert sessions.get(a.token) is a  # used: its expiry moves to 19
    now[0] = 18
    assert sessions.get(a.token) is a
    now[0] = 28.5
    assert sessions.get(a.token) is None
    b, c, d = (sessions.create(Role.READ) for _ in range(3))
    assert sessions.get(b.token) is None and sessions.get(c.token) is c and sessions.get(d.token) is d


def test_a_change_a_browser_sends_from_another_site_is_refused_even_without_keys() -> None:
    """Without keys the API takes no credential, so a page of any site open in the same
    browser could post a form to it; its ``Sec-Fetch-Site: cross-site`` gives it away."""
    body = {"flow": "stream", "inputs": {"clean.items": ["x"]}}
    evil = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    with live_server(FLOWS, cors_origins=("http://tools.example",)) as live:
        refused = live.client.post("/api/jobs", json=body, headers=evil)
        assert refused.status_code == 403
        assert "another site" in refused.json()["detail"]
        assert live.client.get("/api/jobs", headers=evil).status_code == 200  # reading is not refused
        assert live.client.get("/api/jobs").json()["total"] == 0
        same = {"Sec-Fetch-Site": "same-origin", "Origin": live.url}
        assert live.client.post("/api/jobs", json=body, headers=same).status_code == 201
        listed = {"Sec-Fetch-Site": "cross-site", "Origin": "http://tools.example"}
        assert live.client.post("/api/jobs", json=body, headers=listed).status_code == 201
        assert live.client.post("/api/jobs", json=body).status_code == 201  # scripts send no such header


def test_a_change_from_another_port_of_the_same_host_is_refused() -> None:
    """A page on http://localhost:3000 posting to the server on another port is
    ``same-site`` to the browser, yet it is another origin: refused unless listed."""
    body = {"flow": "stream", "inputs": {"clean.items": ["x"]}}
    with live_server(FLOWS, cors_origins=("http://localhost:5173",)) as live:
        other_port = {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"}
        refused = live.client.post("/api/jobs", json=body, headers=other_port)
        assert refused.status_code == 403
        assert "WEIRFLOW_CORS_ORIGINS" in refused.json()["detail"]
        job = start_job(live.client, "stream", keep_open=True)["id"]
        cancel = live.client.post(f"/api/jobs/{job}/cancel", headers=other_port)
        assert cancel.status_code == 403
        assert live.client.get(f"/api/jobs/{job}").json()["status"] != "cancelled"
        listed = {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:5173"}
        assert live.client.post("/api/jobs", json=body, headers=listed).status_code == 201
        typed = {"Sec-Fetch-Site": "none"}  # the user's own navigation, not a page's
        assert live.client.post("/api/jobs", json=body, headers=typed).status_code == 201


@pytest.mark.parametrize("foreign", ["http://localhost:3000", "http://evil.example", "null"])
def test_a_browser_without_sec_fetch_site_is_judged_by_its_origin(foreign: str) -> None:
    """Older browsers send no ``Sec-Fetch-Site`` but do send ``Origin`` with a POST: one
    that is not the server's own nor listed is refused; the server's own is not."""
    body = {"flow": "stream", "inputs": {"clean.items": ["x"]}}
    with live_server(FLOWS, cors_origins=("http://tools.example",)) as live:
        refused = live.client.post("/api/jobs", json=body, headers={"Origin": foreign})
        assert refused.status_code == 403
        assert f"Origin: {foreign}" in refused.json()["detail"]
        assert live.client.get("/api/jobs").json()["total"] == 0
        own = live.client.post("/api/jobs", json=body, headers={"Origin": live.url})
        assert own.status_code == 201
        listed = live.client.post("/api/jobs", json=body, headers={"Origin": "http://tools.example"})
        assert listed.status_code == 201


def test_repeated_bad_keys_from_one_address_get_429_while_others_still_log_in() -> None:
    """Guessing keys at the login is bounded per client address (uvicorn takes the address
    from ``X-Forwarded-For`` of a proxy listed in ``forwarded_allow_ips``, as behind nginx)."""
    with live_server(
        FLOWS, api_keys=KEYS, login_failures=3, login_window_s=60, forwarded_allow_ips="127.0.0.1"
    ) as server:

        def attempt(key: str, address: str) -> httpx.Response:
            return server.client.post("/ui/login", json={"key": key}, headers={"X-Forwarded-For": address})

        for _ in range(3):
            assert attempt("guess", "203.0.113.7").status_code == 401
        refused = attempt("guess", "203.0.113.7")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "too many bad keys" in refused.json()["detail"]
        # the guesser is refused even with a good key until the window moves on...
        assert attempt(ADMIN_KEY, "203.0.113.7").status_code == 429
        # ...while another address logs in, and may get a key wrong without being refused
        assert attempt("typo", "198.51.100.2").status_code == 401
        good = attempt(ADMIN_KEY, "198.51.100.2")
        assert good.status_code == 200 and good.json()["role"] == "admin"
