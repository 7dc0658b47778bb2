"""``weirflow serve``: the HTTP API over the flows of a directory or module.

Binds 127.0.0.1 by default; refuses (exit 2, one line) to listen on any other
address without API keys. Prints where it listens and which flows it loaded;
``Ctrl-C`` stops it (running jobs are cancelled, their items dead-lettered).
"""

from __future__ import annotations

import contextlib
import enum
import gc
import os
import sys
from typing import Annotated

import typer

from ..durable.store import sqlite_file
from ..errors import FlowError, StoreError, StoreOpenError, SuperviseSettingsError

USAGE_ERROR = 2
#: the cyclic GC's young generation in ``weirflow serve`` (Python's default: 700 allocations)
GC_GEN0_ALLOCATIONS = 10_000


class LogLevel(enum.StrEnum):
    """``--log-level`` values (anything else is a usage error naming the flag)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def serve(
    flows: Annotated[
        str | None,
        typer.Option(
            "--flows",
            metavar="DIR_OR_MODULE",
            help="Directory of flow files (*.yaml) or importable module (every wf.Flow at its top "
            "level). Default: WEIRFLOW_FLOWS.",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default 127.0.0.1, WEIRFLOW_HOST).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port (default 8000, WEIRFLOW_PORT; 0 picks a free one)."
        ),
    ] = None,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            "--allowed-hosts",
            metavar="NAMES",
            help="Host names requests may be sent to besides localhost/127.0.0.1/[::1], comma-separated "
            "(app.example.com,*.example.com,[fd00::1], no port; * for any): the public name of a reverse "
            "proxy in front "
            "(default: WEIRFLOW_ALLOWED_HOSTS). Without API keys other hosts get 421.",
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            metavar="IPS",
            help="Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For and "
            "X-Forwarded-Proto are believed, e.g. 127.0.0.1 (default: WEIRFLOW_FORWARDED_ALLOW_IPS; "
            "none).",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", help="uvicorn log level.", case_sensitive=False)
    ] = LogLevel.WARNING,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            help="Durable job store for /api/store/jobs: memory://, sqlite:///path/weirflow.db, "
            "postgresql://... or redis://host:port/db (default: WEIRFLOW_STORE; none: those routes "
            "answer 503).",
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            metavar="URL",
            help="The cluster's node registry for /api/nodes and the Nodes page: redis://host:port/db "
            "(default: WEIRFLOW_REGISTRY; none: /api/nodes answers 503).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            metavar="N",
            help="Run up to N jobs of the store's default queue at once in this process "
            "(default: WEIRFLOW_WORKERS or 0: jobs run where a 'weirflow worker' runs).",
        ),
    ] = None,
    health_interval_s: Annotated[
        float | None,
        typer.Option("--health-interval-s", help="Pipelines: longest wait between health checks (1.0)."),
    ] = None,
    health_failures: Annotated[
        int | None,
        typer.Option("--health-failures", help="Pipelines: failed checks in a row that replace a child (3)."),
    ] = None,
    grace_s: Annotated[
        float | None,
        typer.Option("--grace-s", help="Pipelines: drain time on stop before SIGTERM/SIGKILL (10)."),
    ] = None,
    warm: Annotated[
        int | None, typer.Option("--warm", help="Pipelines: spare child processes kept ready (0).")
    ] = None,
    max_rss_mb: Annotated[
        float | None,
        typer.Option("--max-rss-mb", help="Pipelines: replace a child past this resident memory (none)."),
    ] = None,
    keep_finished: Annotated[
        int | None,
        typer.Option(
            "--keep-finished",
            metavar="N",
            help="Pipelines: finished (stopped or failed) ones kept for GET /api/pipelines; when "
            "one more starts, the oldest are forgotten (default: WEIRFLOW_KEEP_FINISHED or 100).",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (jobs, queues, live events, metrics) for a set of flows."""
    from ..server import SettingsError, create_app, load_settings, make_server
    from ..server.durable_jobs import check_store
    from ..supervise import load_supervise_settings

    if workers and store is None and not os.environ.get("WEIRFLOW_STORE"):  # (names the flag given)
        print("error: --workers needs a store to take jobs from: pass --store URL", file=sys.stderr)
        raise typer.Exit(USAGE_ERROR)
    try:
        settings = load_settings(
            from_flags=True,
            host=host,
            port=port,
            flows=flows,
            store=store,
            workers=workers,
            registry=registry,
            allowed_hosts=allowed_hosts,
            forwarded_allow_ips=forwarded_allow_ips,
        )
        if settings.flows is None:
            raise SettingsError("no flows to serve: pass --flows DIR_OR_MODULE (or set WEIRFLOW_FLOWS)")
        supervise = load_supervise_settings(
            from_flags=True,
            health_interval_s=health_interval_s,
            health_failures=health_failures,
            grace_s=grace_s,
            warm=warm,
            max_rss_mb=max_rss_mb,
            keep_finished=keep_finished,
        )
        app = create_app(settings, supervise=supervise)
    except (SettingsError, SuperviseSettingsError, FlowError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(USAGE_ERROR) from None
    if settings.store is not None:
        path = sqlite_file(settings.store)
        creating = path is not None and not path.exists()
        try:  # now, so a store that cannot be opened is one line, not a failed startup's traceback
            check_store(settings.store)
        except StoreOpenError as e:  # unreachable, or its settings are wrong
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(USAGE_ERROR) from None
        except (StoreError, OSError) as e:  # not a database, a folder that cannot be made: as bad
            print(f"error: cannot open the store: {e}", file=sys.stderr)
            raise typer.Exit(USAGE_ERROR) from None
        if creating:
            print(f"weirflow: creating the store {path}", file=sys.stderr)
    names = ", ".join(f.name for f in app.state.flows)
    auth = (
        f"{len(settings.api_keys)} API key(s)"
        if settings.auth_enabled
        else "open: no API keys, loopback only"
    )

    def listening(urls: list[str]) -> None:
        print(f"weirflow: serving {len(app.state.flows)} flow(s): {names}", flush=True)
        for url in urls:
            print(f"weirflow: listening on {url} ({auth}); Ctrl-C to stop", flush=True)

    server = make_server(
        app, settings, on_listening=listening, log_level=log_level.value, access_log=access_log
    )
    # collect the young generation every GC_GEN0_ALLOCATIONS allocations, not every 700: a
    # finished job's parts are freed by reference counting (the server releases them at
    # once), but at 700 the collector ran every ~20 starts, walking the objects of every
    # request in flight and promoting them to older generations only for them to be freed
    # a moment later (45 us of CPU per POST /api/jobs, benchmarks.http_gc; with 10,000: 1 us,
    # and a young collection takes 1-2 ms at most). (The app's lifespan also freezes what
    # exists at start-up: create_app.)
    gc.set_threshold(GC_GEN0_ALLOCATIONS, *gc.get_threshold()[1:])
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled, after shutdown
        server.run()
    if not server.started:
        print(f"error: could not listen on {settings.host}:{settings.port}", file=sys.stderr)
        raise typer.Exit(1)
    print("weirflow: stopped", flush=True)
