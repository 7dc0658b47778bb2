"""API-key authentication: ``Authorization: Bearer KEY``, keys compared in constant time.

With keys configured, every route but ``/healthz`` needs one: ``401`` without a
key or with an unknown one, ``403`` when a ``read`` key calls a mutating route. Bad keys
count against the client address's budget of ``/ui/login`` (``ui.login_limit``): past it
every keyed call from that address is ``429`` with ``Retry-After``, even with a good key.
Without an ``Authorization`` header the web UI's session cookie stands for the key
it was opened with (``ui.sessions``; changing calls then need its CSRF token). With
keys or without, a change a browser sends from another site is refused.
Without keys the server is open (and listens on loopback only, see ``settings``).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping

from fastapi import Request
from fastapi.security import HTTPBearer

from .errors import ApiError
from .settings import Role, Settings
from .ui.login_limit import LoginLimiter
from .ui.sessions import check_cross_site, check_csrf, cookie_session

bearer = HTTPBearer(
    auto_error=False,
    description="An API key from WEIRFLOW_API_KEYS (role read: GET routes; admin: everything).",
)


class UnauthorizedError(ApiError):
    """No key, or a key the server does not know."""

    status = 401


class ForbiddenError(ApiError):
    """The key's role does not allow this call."""

    status = 403


def role_of(token: str, keys: Mapping[str, Role]) -> Role | None:
    """The role of ``token``; every key is compared, in constant time, whether or not one matched."""
    given = token.encode()
    found: Role | None = None
    for key, role in keys.items():
        if hmac.compare_digest(given, key.encode()):
            found = role
    return found


class RoleBearer(HTTPBearer):
    """The dependency admitting requests whose key has ``role`` (``admin`` has every role).

    One dependency that is also the ``HTTPBearer`` security scheme of the OpenAPI schema:
    FastAPI solves every dependency of every request anew, at a cost per dependency that
    showed in the profiles of the hot routes (a check depending on ``bearer`` was two).

    ``changing``: the call changes something even as a GET (a GET that consumes), so the
    cross-site and CSRF checks of a change apply to it."""

    def __init__(self, role: Role, *, changing: bool = False) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description=bearer.model.description)
        self.role = role
        self.changing = changing

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        settings: Settings = request.app.state.settings
        check_cross_site(request, settings.cors_origins, changing=self.changing)
        if not settings.auth_enabled:
            return
        credentials = await super().__call__(request)
        if credentials is None:
            session = cookie_session(request)
            if session is None:
                raise UnauthorizedError(
                    "missing API key: send 'Authorization: Bearer KEY'", headers=_challenge()
                )
            check_csrf(request, session, changing=self.changing)
            have: Role | None = session.role
        else:  # one budget of bad keys per client address, shared with /ui/login
            limiter: LoginLimiter = request.app.state.ui_logins
            client = request.client.host if request.client is not None else ""
            limiter.check(client)  # (429 while this address has had too many bad keys)
            have = role_of(credentials.credentials, settings.api_keys)
            if have is None:
                limiter.failed(client)
        if have is None:
            raise UnauthorizedError("invalid API key", headers=_challenge())
        if self.role is Role.ADMIN and have is not Role.ADMIN:
            what = "this call" if self.changing else request.method
            raise ForbiddenError(f"this API key has role {have.value!r}; {what} needs 'admin'")


def require(role: Role, *, changing: bool = False) -> Callable[..., Awaitable[None]]:
    """A dependency admitting requests whose key has ``role`` (see ``RoleBearer``)."""
    return RoleBearer(role, changing=changing)


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": "Bearer"}


require_read = require(Role.READ)
require_admin = require(Role.ADMIN)
require_admin_change = require(Role.ADMIN, changing=True)
"""For a GET that changes something (``GET /api/pipelines/{id}/results`` consumes)."""
