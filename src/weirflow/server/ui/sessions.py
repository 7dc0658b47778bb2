"""Browser sessions of the web UI: a key checked once, then an ``HttpOnly`` cookie.

A browser cannot send ``Authorization`` with a page load or an ``EventSource``, so
after ``POST /ui/login`` checks an API key the server keeps a session (random
token -> role, CSRF token, expiry) and sets the token as the ``weirflow_session``
cookie (``HttpOnly``, ``SameSite=Strict``, path ``/``). ``auth.require`` accepts
that cookie where no ``Authorization`` header is given. A request authenticated by
the cookie that may change something (any method but ``GET``/``HEAD``) must also
carry the session's CSRF token in ``X-CSRF-Token``: ``SameSite=Strict`` already
keeps other sites' requests from carrying the cookie, and the header is a second
lock that a cross-site form cannot open (it cannot set headers).

Sessions live in memory (``app.state.ui_sessions``): a server restart logs
everyone out. The key itself is never stored in the cookie.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from ..errors import ApiError
from ..settings import Role

COOKIE = "weirflow_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_IDLE_S = 12 * 3600.0
MAX_SESSIONS = 10_000
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfError(ApiError):
    """A cookie-authenticated request that changes something came without its CSRF token,
    or a browser sent a change from another site."""

    status = 403


@dataclass
class Session:
    token: str
    role: Role
    csrf: str
    expires_at: float


class Sessions:
    """The UI sessions of one app, at most ``max_sessions`` (the oldest are dropped first)."""

    def __init__(
        self,
        *,
        idle_s: float = SESSION_IDLE_S,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._by_token: OrderedDict[str, Session] = OrderedDict()

    def create(self, role: Role) -> Session:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session = Session(token, role, csrf, self.clock() + self.idle_s)
        self._by_token[session.token] = session
        while len(self._by_token) > self.max_sessions:
            self._by_token.popitem(last=False)
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its expiry pushed back), or ``None``."""
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        now = self.clock()
        if session.expires_at < now:
            del self._by_token[token]
            return None
        session.expires_at = now + self.idle_s
        self._by_token.move_to_end(token)
        return session

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.ui_sessions
    return sessions


def cookie_session(request: Request) -> Session | None:
    """The request's UI session from its cookie, or ``None`` (no cookie, unknown or expired)."""
    sessions: Sessions | None = getattr(request.app.state, "ui_sessions", None)
    if sessions is None:
        return None
    return sessions.get(request.cookies.get(COOKIE))


def check_csrf(request: Request, session: Session, *, changing: bool = False) -> None:
    """``CsrfError`` unless a changing request (``changing``: a GET that changes something
    too) carries the session's CSRF token."""
    if request.method in SAFE_METHODS and not changing:
        return
    given = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise CsrfError(f"missing or wrong {CSRF_HEADER} header: a UI session must send its CSRF token")


TRUSTED_FETCH_SITES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def check_cross_site(request: Request, allowed_origins: tuple[str, ...], *, changing: bool = False) -> None:
    """``CsrfError`` for a changing request a browser sent from another origin, unless its
    ``Origin`` is one of ``WEIRFLOW_CORS_ORIGINS``.

    Without keys the API takes no credential at all, so this is what keeps a web page in
    the same browser (another site, or another port of the same host, which browsers call
    ``same-site``) from posting to it: a form needs no preflight. A browser that sends
    ``Sec-Fetch-Site`` is trusted only with ``same-origin`` or ``none`` (typed by the
    user); one that does not is judged by its ``Origin``, which must be this server's own
    ``scheme://host:port``. Requests with neither header (curl, scripts, the Python
    client) are not browsers' and pass; API keys protect those. ``changing``: a GET that
    changes something (it consumes) is judged as a change."""
    if request.method in SAFE_METHODS and not changing:
        return
    site: str | None = None
    origin: str | None = None
    # (the two headers from the raw list in one pass, first of each, as ``request.headers``
    # would give them: building that mapping cost more than the check, on every change)
    for name, value in request.scope["headers"]:
        if name == b"sec-fetch-site":
            if site is None:
                site = value.decode("latin-1")
        elif name == b"origin" and origin is None:
            origin = value.decode("latin-1")
    if site is not None:
        if site.strip().lower() in TRUSTED_FETCH_SITES:
            return
    elif origin is None or _same_origin(origin, request):
        return
    if origin is not None and origin.rstrip("/") in allowed_origins:
        return
    told = f"Sec-Fetch-Site: {site}" if site is not None else f"Origin: {origin}"
    raise CsrfError(
        f"a change sent by a browser from another site or origin is refused ({told}); "
        "list its origin in WEIRFLOW_CORS_ORIGINS to allow it"
    )


def _origin_key(scheme: str, host: str, port: int | None) -> tuple[str, str, int | None]:
    scheme = scheme.lower()
    return scheme, host.lower().strip("[]"), port if port is not None else DEFAULT_PORTS.get(scheme)


def _same_origin(origin: str, request: Request) -> bool:
    """Whether ``origin`` is the request's own ``scheme://host:port`` (default ports filled in;
    ``null`` or anything unparsable is not). Compared by hand: only three fields matter."""
    try:
        given = urlsplit(origin.strip())
        own = urlsplit(f"{request.url.scheme}://{request.headers.get('host', '')}")
        if not given.hostname or not own.hostname or given.path not in ("", "/"):
            return False
        return _origin_key(given.scheme, given.hostname, given.port) == _origin_key(
            own.scheme, own.hostname, own.port
        )
    except ValueError:  # a port that is not a number
        return False
