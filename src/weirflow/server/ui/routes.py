"""The web UI's own routes: the page shell at ``/ui/...``, login, the session, ``/docs``.

Every page is the same static shell; the browser code (``static/js``) draws it from
the HTTP API. With API keys set, a page asked for without a live session redirects
to ``/ui/login``, which checks a key once and sets the session cookie
(``sessions``). Nothing here reads or changes a job: that is the API's work.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from ..auth import UnauthorizedError, role_of
from ..settings import Settings
from .login_limit import LoginLimiter
from .sessions import COOKIE, check_csrf, cookie_session, sessions_of

router = APIRouter(include_in_schema=False)

#: pages load only this server's scripts and styles, and may not be framed
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_KEY_CHARS = 4096


def _page(name: str) -> str:
    return resources.files(__package__).joinpath("pages", name).read_text(encoding="utf-8")


def _html(name: str) -> HTMLResponse:
    return HTMLResponse(_page(name), headers=SECURITY_HEADERS)


def _logged_in(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return not settings.auth_enabled or cookie_session(request) is not None


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


class Login(BaseModel):
    key: Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS)]


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui/login")
async def login_page(request: Request) -> Response:
    return _html("login.html")


@router.post("/ui/login")
async def login(body: Login, request: Request) -> JSONResponse:
    """Check the key; on success start a session and set its cookie."""
    settings: Settings = request.app.state.settings
    if not settings.auth_enabled:
        return JSONResponse({"role": "admin", "auth": False})
    logins: LoginLimiter = request.app.state.ui_logins
    client = request.client.host if request.client is not None else ""
    logins.check(client)  # (429 while this address has had too many bad keys)
    role = role_of(body.key, settings.api_keys)
    if role is None:
        logins.failed(client)
        raise UnauthorizedError("invalid API key")
    session = sessions_of(request).create(role)
    answer = JSONResponse({"role": role.value, "auth": True}, headers={"Cache-Control": "no-store"})
    answer.set_cookie(
        COOKIE,
        session.token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return answer


@router.post("/ui/logout")
async def logout(request: Request) -> JSONResponse:
    session = cookie_session(request)
    if session is not None:
        check_csrf(request, session)
        sessions_of(request).drop(session.token)
    answer = JSONResponse({"logged_out": True})
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return answer


@router.get("/ui/session")
async def session_info(request: Request) -> dict[str, Any]:
    """What the browser code needs: whether keys are on, the role, the CSRF token."""
    settings: Settings = request.app.state.settings
    if not settings.auth_enabled:
        return {"auth": False, "role": "admin", "csrf": None}
    session = cookie_session(request)
    if session is None:
        raise UnauthorizedError("not logged in: POST a key to /ui/login")
    return {"auth": True, "role": session.role.value, "csrf": session.csrf}


@router.get("/docs")
async def docs(request: Request) -> Response:
    """Swagger UI (vendored) over ``/openapi.json``, behind the same login."""
    return _html("docs.html") if _logged_in(request) else _to_login(request)


@router.get("/ui")
@router.get("/ui/{path:path}")
async def shell(request: Request, path: str = "") -> Response:
    """Every page of the UI: the browser code reads the path and draws it."""
    return _html("app.html") if _logged_in(request) else _to_login(request)
