"""``create_app(settings, flows=...)``: the FastAPI app over one ``Engine``.

Nothing is global: the lifespan creates the engine (with the event hub and the
metrics hooks), registers the flows and hangs everything off ``app.state``
(``engine``, ``service``, ``hub``, ``metrics``, ``debugger`` with its ``debug``
service, and with a ``store`` setting ``store_service`` over the opened durable store, and
with ``workers`` a ``worker`` running that store's jobs, with ``registry`` the node
``registry`` of the cluster, and ``supervisor``, the pipelines' ``wf.Supervisor``); on
shutdown it stops the worker and
closes the engine and the store,
which cancels unfinished jobs (their items are dead-lettered), and ends every
event stream after its job's last events. The web UI (``ui.mount.install_ui``) is served at
``/ui`` and Swagger UI at ``/docs``.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from .. import __version__
from ..debug import Debugger
from ..durable.metrics import QueueMetrics
from ..durable.worker import Worker
from ..flow.graph import Flow
from ..flow.source import check_unique, load_flows
from ..metrics import EngineMetrics
from ..runtime.engine import Engine
from ..supervise import SuperviseSettings, Supervisor, load_supervise_settings
from .auth import require_read
from .body_limit import BodyLimitMiddleware
from .debugging import DebugService
from .durable_jobs import StoreService
from .errors import install_error_handlers
from .events import EventHub
from .hosts import HostCheckMiddleware, host_check_needed
from .openapi_caps import document_caps
from .routes import ROUTERS
from .service import JobService
from .settings import Settings
from .store_ready import StoreReadiness
from .ui.mount import install_ui

DESCRIPTION = """Control weirflow jobs: start them, stream items in, pause, resume, watch
their queues and events. Send `Authorization: Bearer KEY` (keys from
`WEIRFLOW_API_KEYS`; `read` keys may only GET)."""


def create_app(
    settings: Settings | None = None,
    *,
    flows: Iterable[Flow] | str | None = None,
    supervise: SuperviseSettings | None = None,
) -> FastAPI:
    """Build the app. ``flows`` are ``Flow`` objects or a ``--flows`` source (directory of
    flow files or module); by default ``settings.flows``. They are loaded now, so a bad
    flow fails here rather than at the first request."""
    settings = settings if settings is not None else Settings()
    source = flows if flows is not None else settings.flows
    loaded = load_flows(source) if isinstance(source, str) else list(source or [])
    check_unique(loaded)
    for flow in loaded:
        flow.validate()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine_state(app, settings, loaded):
            yield

    app = FastAPI(
        title="weirflow",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url=None,  # served below, behind the API key like every route but /healthz
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.flows = loaded
    # pipelines' children load the flows the way the server did: from the source, or pickled
    app.state.flow_source = source if isinstance(source, str) else loaded
    app.state.supervise_settings = supervise if supervise is not None else load_supervise_settings()
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # outermost, so preflights are answered before auth and limits
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    if host_check_needed(settings):  # outermost: a request for another host is answered by no one
        app.add_middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_read)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    def openapi_with_caps() -> dict[str, Any]:  # built once (FastAPI keeps it), with the caps
        if app.openapi_schema is None:
            app.openapi_schema = document_caps(FastAPI.openapi(app), settings)
        return app.openapi_schema

    app.openapi = openapi_with_caps  # type: ignore[method-assign]

    install_ui(app)
    return app


@asynccontextmanager
async def engine_state(app: FastAPI, settings: Settings, flows: list[Flow]) -> AsyncIterator[None]:
    """Create the engine and the service (and open the store) for the app's lifetime."""
    metrics = EngineMetrics()
    hub = EventHub(settings.event_buffer)
    engine = Engine(hooks=[hub, metrics.hooks])
    for flow in flows:
        engine.register(flow)
    metrics.watch(engine)
    service = JobService(engine, hub, settings)
    debug = DebugService(service, Debugger(engine), hub, metrics)
    hub.on_finished = debug.job_finished  # forgets old jobs and their debug sessions
    app.state.engine, app.state.hub, app.state.metrics, app.state.service = engine, hub, metrics, service
    app.state.debugger, app.state.debug = debug.debugger, debug
    # what exists now (app, routes, models, modules) lives as long as the server: keep it
    # out of the cyclic GC's full collections, which otherwise scan it again and again
    gc.freeze()
    try:
        async with AsyncExitStack() as stack:
            if settings.registry is not None:
                from ..cluster import Registry

                registry = Registry(settings.registry)
                await registry.start(require=False)  # the API serves during a Redis outage
                stack.push_async_callback(registry.close)
                app.state.registry = registry
                stack.callback(delattr, app.state, "registry")
            supervisor = Supervisor(flows=app.state.flow_source, settings=app.state.supervise_settings)
            app.state.supervisor = await stack.enter_async_context(supervisor)
            stack.callback(delattr, app.state, "supervisor")
            metrics.registry.register(supervisor.metrics)
            if settings.store is not None:
                dispatcher = None
                if settings.registry is not None:  # jobs submitted with a pool go to its nodes
                    from ..cluster import Dispatcher

                    dispatcher = Dispatcher(app.state.registry)
                store_service = await stack.enter_async_context(
                    StoreService.opened(settings.store, engine.flows, dispatcher=dispatcher)
                )
                app.state.store_service = store_service
                stack.callback(delattr, app.state, "store_service")
                app.state.store_ready = StoreReadiness(store_service.store, settings.store)
                stack.callback(delattr, app.state, "store_ready")
                stack.callback(app.state.store_ready.close)
                queue_metrics = QueueMetrics()
                queue_metrics.watch_store(store_service.store)
                app.state.queue_metrics = queue_metrics
                stack.callback(delattr, app.state, "queue_metrics")
                if settings.workers:  # its own engine: durable jobs are not the API's live jobs
                    worker = Worker(
                        store_service.store,
                        flows,
                        concurrency=settings.workers,
                        shutdown_grace_s=settings.shutdown_grace_s,
                        metrics=queue_metrics,
                    )
                    app.state.worker = await stack.enter_async_context(worker)
                    stack.callback(delattr, app.state, "worker")
            yield
    finally:
        await service.shutdown()
        del app.state.service


async def begin_shutdown(app: FastAPI) -> None:
    """Stop the engine and end every event stream now (call on the server's loop as soon as
    it starts shutting down), so open streams see their jobs' last events and end instead
    of holding the shutdown up."""
    service: JobService | None = getattr(app.state, "service", None)
    supervisor: Supervisor | None = getattr(app.state, "supervisor", None)
    stops = [] if supervisor is None else [supervisor.close()]  # pipelines stop in parallel
    if service is not None:
        stops.append(service.shutdown())
    await asyncio.gather(*stops)
