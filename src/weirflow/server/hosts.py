"""ASGI middleware checking the ``Host`` header: ``421`` for a host name this server is not.

A server without API keys takes no credential, and binds loopback only; what keeps a web page
in the browser from driving it by DNS rebinding (its own name re-pointed at 127.0.0.1, so the
browser calls the page same-origin) is that such a request names the page's host in ``Host``.
So a keyless server answers only to loopback names (``localhost``, ``127.0.0.0/8``, ``::1``,
any port) and to the names of ``WEIRFLOW_ALLOWED_HOSTS`` (``--allowed-hosts``: a proxy's
public name). With keys the check applies only when ``WEIRFLOW_ALLOWED_HOSTS`` is set.

Both sides of the comparison are brought to one form first: lower case, no trailing dot, and
an IP address as ``ipaddress`` writes it (``[FD00:0::0001]:8080`` and the entry ``fd00::1``
are the same host). A wildcard (``*.example.com``) matches names only, never an address.

Written here rather than Starlette's ``TrustedHostMiddleware``: that one matches names
only (not the whole ``127.0.0.0/8``) and answers plain text, where every other answer of
the API is ``{"detail": ...}``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from .settings import Settings

ANY_HOST = "*"
MAX_REMEMBERED_HOSTS = 64  # ``Host`` values a ``HostCheckMiddleware`` keeps as allowed
HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split(value: str) -> tuple[str, str] | None:
    """``(host, port)`` of ``name[:port]``, ``a.b.c.d[:port]`` or ``[v6][:port]`` (lower case)
    in the compared form (``port`` is ``""`` when there is none); ``None`` when malformed: an
    unclosed ``[``, brackets around anything but an IPv6 address, a bare IPv6 address, a port
    that is not digits."""
    if value.startswith("["):
        end = value.find("]")
        ip = _ip(value[1:end]) if end > 0 else None
        if not isinstance(ip, ipaddress.IPv6Address):
            return None
        host, rest = str(ip), value[end + 1 :]
    else:
        name, sep, port = value.partition(":")
        if ":" in port:  # an IPv6 address without brackets, or two ports
            return None
        name = name.removesuffix(".")
        ip = _ip(name)
        host, rest = (name if ip is None else str(ip)), sep + port
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return (host, rest[1:]) if host else None


def host_name(header: str) -> str | None:
    """The host of a ``Host`` header in the compared form (lower case, no port, brackets or
    trailing dot, an IP address as ``ipaddress`` writes it), or ``None`` when it is empty or
    malformed (a port that is not a number, an unclosed ``[``, a bare IPv6 address)."""
    split = _split(header.strip().lower())
    return None if split is None else split[0]


def allowed_host_entry(entry: str) -> str:
    """One entry of ``WEIRFLOW_ALLOWED_HOSTS`` in the compared form: ``*``, a name, ``*.domain``
    or an IP address (an IPv6 one bare or in brackets); ``ValueError`` for anything else (a
    port, a scheme, brackets around a name)."""
    value = entry.strip().lower()
    if value == ANY_HOST:
        return value
    ip = _ip(value.removesuffix("."))
    if ip is not None:  # a bare IPv6 address too (its colons are no port)
        return str(ip)
    if value.startswith("["):
        split = _split(value)
        if split is not None and not split[1]:  # (``_split`` takes only an IPv6 address in brackets)
            return split[0]
    else:
        name = value.removesuffix(".")
        if all(HOST_LABEL.fullmatch(label) for label in name.removeprefix("*.").split(".")):
            return name
    raise ValueError(
        f"({entry.strip()!r}) must be *, a host name or IP address without a port "
        "([fd00::1] or fd00::1 for IPv6), or *.domain"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost``, ``127.0.0.0/8``, ``::1``, also in
    brackets or IPv4-mapped: ``::ffff:127.0.0.1``)."""
    if host.lower().removesuffix(".") == "localhost":
        return True
    ip = _ip(host.strip("[]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip is not None and ip.is_loopback


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` (in the compared form) is a loopback name or matches one of
    ``patterns`` (a name or address, or ``*.domain``, which matches names only, never an
    IP address)."""
    if is_loopback(host):
        return True
    is_ip = _ip(host) is not None
    for pattern in patterns:
        if pattern == ANY_HOST or host == pattern:
            return True
        if not is_ip and pattern.startswith("*.") and host.endswith(pattern[1:]):
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
