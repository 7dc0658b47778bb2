"""Server settings, read from ``WEIRFLOW_*`` environment variables and validated at start.

``WEIRFLOW_API_KEYS="k1:admin,k2:read"`` gives each key a role; ``read`` keys may
call every ``GET`` route, ``admin`` keys every route. Without keys the server is
open, and then it may only listen on a loopback address.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Collection
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..redis_url import registry_url_problem
from ..supervise.settings import setting_name
from .hosts import allowed_host_entry
from .hosts import is_loopback as is_loopback  # (re-exported: the worker metrics server checks it too)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_EVENT_BUFFER = 10_000


class Role(enum.StrEnum):
    """What an API key may do: ``read`` (GET routes) or ``admin`` (everything)."""

    READ = "read"
    ADMIN = "admin"


class SettingsError(ValueError):
    """The settings are invalid; the message is one line naming the setting."""


def parse_api_keys(value: Any) -> dict[str, Role]:
    """``"k1:admin,k2:read"`` (or a mapping) -> ``{"k1": Role.ADMIN, ...}``; ``ValueError`` if malformed."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        entries = [(str(k), str(v)) for k, v in value.items()]
    elif isinstance(value, str):
        entries = []
        for n, part in enumerate(value.split(","), start=1):
            key, sep, role = part.strip().rpartition(":")
            if not sep or not key.strip():
                raise ValueError(f"entry {n} must look like KEY:ROLE (ROLE is admin or read)")
            entries.append((key.strip(), role.strip()))
    else:
        raise ValueError("must be a string like 'k1:admin,k2:read'")
    keys: dict[str, Role] = {}
    for n, (key, role) in enumerate(entries, start=1):
        if role not in Role.__members__.values():
            raise ValueError(f"entry {n}: role {role!r} is not admin or read")
        if any(c.isspace() for c in key) or not key.isprintable():
            raise ValueError(f"entry {n}: a key must be printable and contain no whitespace")
        if key in keys:
            raise ValueError(f"entry {n}: the same key is listed twice")
        keys[key] = Role(role)
    return keys


def _entries(value: Any) -> list[tuple[int, str]]:
    """The entries of a list setting (a comma-separated string, or a list), stripped and
    numbered from 1 for the messages; none for ``None`` or ``""``."""
    if value is None or value == "":
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    return [(n, str(raw).strip()) for n, raw in enumerate(parts, start=1)]


def parse_origins(value: Any) -> tuple[str, ...]:
    """``"https://a.example,http://localhost:3000"`` -> a tuple of origins; ``ValueError`` for
    anything that is not ``*`` or ``scheme://host[:port]`` with no path."""
    origins: list[str] = []
    for n, origin in _entries(value):
        if origin == "*":
            origins.append(origin)
            continue
        url = urlsplit(origin)
        if url.scheme not in ("http", "https") or not url.hostname or url.path or url.query or url.fragment:
            raise ValueError(f"entry {n} ({origin!r}) must be * or look like https://host[:port]")
        origins.append(origin.rstrip("/"))
    return tuple(origins)


def parse_allowed_hosts(value: Any) -> tuple[str, ...]:
    """``"app.example.com,*.example.org,[fd00::1]"`` -> the entries in the form ``Host``
    headers are compared in (``hosts.allowed_host_entry``); ``ValueError`` naming the first
    bad entry."""
    hosts: list[str] = []
    for n, entry in _entries(value):
        try:
            hosts.append(allowed_host_entry(entry))
        except ValueError as e:
            raise ValueError(f"entry {n} {e}") from None
    return tuple(hosts)


def parse_forwarded_ips(value: Any) -> tuple[str, ...]:
    """``"127.0.0.1,10.0.0.0/8"`` -> the proxies' addresses or networks (or ``*``);
    ``ValueError`` for anything else."""
    ips: list[str] = []
    for n, entry in _entries(value):
        if entry != "*":
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"entry {n} ({entry!r}) must be * or an IP address or network (10.0.0.0/8)"
                ) from None
        ips.append(entry)
    return tuple(ips)


class Settings(BaseSettings):
    """Everything the HTTP server can be configured with (env prefix ``WEIRFLOW_``)."""

    model_config = SettingsConfigDict(env_prefix="WEIRFLOW_", extra="ignore", frozen=True)

    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    api_keys: Annotated[dict[str, Role], NoDecode] = Field(default_factory=dict, repr=False)
    flows: str | None = None
    """Directory of flow files or importable module (``--flows`` overrides it)."""
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=0)
    max_send_timeout_s: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    """Cap on ``timeout_s`` of ``POST /api/jobs/{id}/input``."""
    max_wait_s: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    """Cap on ``wait_s`` of ``GET /api/jobs/{id}/result``."""
    retry_after_s: int = Field(default=1, ge=1)
    """``Retry-After`` sent with ``429`` when a slot stayed full."""
    pause_wait_s: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    """How long ``/pause`` waits for running handler calls to reach a safe point."""
    event_buffer: int = Field(default=DEFAULT_EVENT_BUFFER, ge=1)
    """Events kept per job for ``Last-Event-ID`` replay (older ones are reported as a gap)."""
    sse_heartbeat_s: float = Field(default=15.0, gt=0, allow_inf_nan=False)
    keep_finished_jobs: int = Field(default=1000, ge=0)
    """Finished jobs kept for ``/result``; older ones are forgotten."""
    shutdown_grace_s: int = Field(default=10, ge=0)
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)
    """A request's headers must be complete within this of the connection opening (or of the
    first bytes of a later request on it); otherwise the connection is closed."""
    keep_alive_s: int = Field(default=5, ge=1, le=3600)
    """An idle keep-alive connection is closed after this."""
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    """Open connections beyond this get ``503`` and are closed at once."""
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """Origins (``https://app.example.com``, comma-separated) whose browser pages may call the
    API; empty (the default): no cross-origin call is allowed. ``*`` allows any origin."""
    login_failures: int = Field(default=10, ge=1)
    """Bad keys one client address may try at ``/ui/login`` within ``login_window_s``; then
    ``429`` with ``Retry-After`` until the window has moved past them."""
    login_window_s: int = Field(default=60, ge=1, le=86_400)
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    """Host names (``app.example.com``, ``*.example.com``, comma-separated) a request's ``Host``
    may name besides the loopback ones; ``*``: any. Without API keys a request naming another
    host is refused (``421``: DNS rebinding); with keys the check applies only when set."""
    forwarded_allow_ips: Annotated[tuple[str, ...], NoDecode] = ()
    """Addresses or networks of the reverse proxies whose ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` are believed (``127.0.0.1`` for a proxy on this machine); empty (the
    default): none, the client address is the connection's."""
    store: str | None = Field(default=None, repr=False)
    """Durable job store URL (``memory://``, ``sqlite:///path.db``, ``postgresql://...``,
    ``redis://host:port/db``) for the
    ``/api/store`` routes (``--store`` overrides it); without one they answer ``503``."""
    registry: str | None = Field(default=None, repr=False)
    """Redis URL of the cluster's node registry (``redis://host:port/db``, ``--registry``
    overrides it) for ``GET /api/nodes``, the Nodes page and ``/readyz``; without one
    ``/api/nodes`` answers ``503``."""
    workers: int = Field(default=0, ge=0, le=1000)
    """Jobs of the store's ``default`` queue this server runs at once with a worker of its own
    (``--workers`` overrides it); 0: none, jobs run where a ``weirflow worker`` runs."""

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> dict[str, Role]:
        return parse_api_keys(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> tuple[str, ...]:
        return parse_origins(value)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _parse_hosts(cls, value: Any) -> tuple[str, ...]:
        return parse_allowed_hosts(value)

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _parse_forwarded(cls, value: Any) -> tuple[str, ...]:
        return parse_forwarded_ips(value)

    @field_validator("registry")
    @classmethod
    def _check_registry(cls, value: str | None) -> str | None:
        problem = None if value is None else registry_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from ..durable.store import open_store
        from ..errors import StoreError

        try:
            open_store(value)  # checks the URL; connects nothing
        except StoreError as e:
            raise ValueError(str(e)) from None
        return value

    @model_validator(mode="after")
    def _workers_need_a_store(self) -> Settings:
        if self.workers and self.store is None:
            raise ValueError(
                "WEIRFLOW_WORKERS needs a store to take jobs from: set WEIRFLOW_STORE (or --store)"
            )
        return self

    @model_validator(mode="after")
    def _open_only_on_loopback(self) -> Settings:
        if not self.api_keys and not is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on {self.host} without API keys: set WEIRFLOW_API_KEYS "
                f"(e.g. 'KEY:admin') or bind to {DEFAULT_HOST}"
            )
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)


def load_settings(*, from_flags: bool = False, **overrides: Any) -> Settings:
    """Settings from the environment with ``overrides`` (``None`` values ignored).

    Raises ``SettingsError`` with one line per problem, naming the environment variable,
    or with ``from_flags`` (the CLI, whose flags are the overrides) the flag for a value
    given as one (``--registry``).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        raise SettingsError(describe_errors(e, given=given, from_flags=from_flags)) from None


def describe_errors(error: ValidationError, *, given: Collection[str] = (), from_flags: bool = False) -> str:
    problems = []
    for err in error.errors():
        msg = err["msg"].removeprefix("Value error, ")
        loc = err["loc"]
        if loc:
            problems.append(f"{setting_name(str(loc[0]), given=given, from_flags=from_flags)}: {msg}")
        else:
            problems.append(msg)
    return "; ".join(problems)
