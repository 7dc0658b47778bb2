"""``weirflow worker --metrics-port N [--metrics-host H]``: the worker's Prometheus metrics.

Loopback by default; another address needs API keys (``WEIRFLOW_API_KEYS``, as for
``weirflow serve``), and scrapes then send ``Authorization: Bearer KEY``. Without keys,
as a keyless ``weirflow serve``, only requests naming a loopback host in ``Host`` are
answered (``421`` otherwise: DNS rebinding). The HTTP stack is
imported only when a port is given.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .inputs import InputError

if TYPE_CHECKING:
    from ..durable.metrics import QueueMetrics


def metrics_keys(host: str) -> dict[str, object]:
    """The API keys scrapes must send (none on loopback without keys); ``InputError`` for a
    non-loopback ``host`` without keys, or malformed keys."""
    from ..server.settings import is_loopback, parse_api_keys

    try:
        keys: dict[str, object] = dict(parse_api_keys(os.environ.get("WEIRFLOW_API_KEYS", "")))
    except ValueError as e:
        raise InputError(f"WEIRFLOW_API_KEYS: {e}") from None
    if not keys and not is_loopback(host):
        raise InputError(
            f"--metrics-host {host!r}: serving metrics beyond loopback needs API keys "
            "(set WEIRFLOW_API_KEYS; scrapes then send Authorization: Bearer KEY)"
        )
    return keys


def loopback_hosts_only(raw: str) -> tuple[int, str] | None:
    """The check of a keyless ``weirflow serve`` (``server/hosts.py``): a request must name a
    loopback host (``localhost``, ``127.0.0.0/8``, ``[::1]``, any port) in ``Host``, so a web
    page cannot read the metrics by DNS rebinding (its own name re-pointed at 127.0.0.1):
    ``421`` otherwise, ``400`` without a readable ``Host``."""
    from ..server.hosts import host_allowed, host_name

    host = host_name(raw)
    if host is None:
        return 400, "missing or malformed Host header"
    if not host_allowed(host, ()):
        return 421, (
            f"this metrics server does not answer to the host {raw.strip()[:100]!r}: "
            "it answers to localhost, 127.0.0.1 and [::1] (set WEIRFLOW_API_KEYS to serve others)"
        )
    return None


@asynccontextmanager
async def metrics_served(
    metrics: QueueMetrics | None, *, host: str, port: int | None, keys: dict[str, object]
) -> AsyncIterator[None]:
    """Serve ``metrics`` at ``host``:``port`` for the block (nothing when ``port`` is None);
    ``keys`` from ``metrics_keys``."""
    if port is None:
        yield
        return
    assert metrics is not None, "metrics are made when a port is given"
    from ..durable.metrics_http import start_metrics_server

    try:
        server, task, url = await start_metrics_server(
            metrics, host=host, port=port, api_keys=keys, host_check=None if keys else loopback_hosts_only
        )
    except OSError as e:  # (the port is taken, the address is not this machine's)
        why = e.strerror or str(e)
        raise InputError(f"--metrics-port {port}: cannot listen on {host}:{port}: {why}") from None
    print(f"weirflow worker: metrics at {url}", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        server.should_exit = True
        await task
