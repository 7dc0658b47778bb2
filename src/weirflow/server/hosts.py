"""ASGI middleware checking the ``Host`` header: ``421`` for a host name this server is not.

A server without API keys takes no credential, and binds loopback only; what keeps a web page
in the browser from driving it by DNS rebinding (its own name re-pointed at 127.0.0.1, so the
browser calls the page same-origin) is that such a request names the page's host in ``Host``.
So a keyless server answers only to loopback names (``localhost``, ``127.0.0.0/8``, ``::1``,
any port) and to the names of ``WEIRFLOW_ALLOWED_HOSTS`` (``--allowed-hosts``: a proxy's
public name). With keys the check applies only when ``WEIRFLOW_ALLOWED_HOSTS`` is set.

Written here rather than Starlette's ``TrustedHostMiddleware``: that one matches names
only (not the whole ``127.0.0.0/8``) and answers plain text, where every other answer of
the API is ``{"detail": ...}``.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from .settings import Settings, is_loopback

ANY_HOST = "*"
MAX_REMEMBERED_HOSTS = 64  # ``Host`` values a ``HostCheckMiddleware`` keeps as allowed


def host_name(header: str) -> str | None:
    """The host of a ``Host`` header (lower case, no port, brackets or trailing dot), or ``None``
    when it is empty or malformed (a port that is not a number, an unclosed ``[``)."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
    else:
        host, sep, port = value.partition(":")
        rest = sep + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return host.rstrip(".") or None


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` is a loopback name or matches one of ``patterns`` (``name``, ``*.domain``)."""
    if is_loopback(host):
        return True
    for pattern in patterns:
        if pattern == ANY_HOST or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def host_check_needed(settings: Settings) -> bool:
    """Whether the app must check ``Host``: without keys always, with keys if names are listed."""
    if ANY_HOST in settings.allowed_hosts:
        return False
    return not settings.auth_enabled or bool(settings.allowed_hosts)


class HostCheckMiddleware:
    """``421`` for a request whose ``Host`` is neither loopback nor an allowed name; ``400``
    without a readable ``Host``."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        # ``Host`` values seen allowed (clients send the same one or two): parsing one and
        # matching it against 127.0.0.0/8 (``ipaddress``) cost more than the rest of this
        # check, on every request; bounded, so that made-up names cannot grow it
        self._allowed: set[bytes] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = b""
        for k, v in scope["headers"]:
            if k == b"host":
                value = v
                break
        if value in self._allowed:
            await self.app(scope, receive, send)
            return
        raw = value.decode("latin-1")
        host = host_name(raw)
        if host is None:
            await _reply(send, 400, "missing or malformed Host header")
            return
        if not host_allowed(host, self.allowed_hosts):
            await _reply(
                send,
                421,
                f"this server does not answer to the host {raw.strip()[:100]!r}: it answers to "
                "localhost, 127.0.0.1 and [::1]; list other names in WEIRFLOW_ALLOWED_HOSTS "
                "(--allowed-hosts)",
            )
            return
        if len(self._allowed) < MAX_REMEMBERED_HOSTS:
            self._allowed.add(value)
        await self.app(scope, receive, send)


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
