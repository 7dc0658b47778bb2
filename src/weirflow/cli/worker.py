"""``weirflow worker``: run durable jobs from a store until SIGTERM or SIGINT.

With ``--processes N`` (N > 1) the command is a supervisor of N worker processes
(``weirflow.supervise.workers``): a worker that dies or hangs is replaced, and a
SIGTERM or SIGINT stops them all within the grace period (plus a second at most)."""

from __future__ import annotations

import asyncio
import functools
import gc
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from ..durable.alerts import AlertRules
from ..durable.models import Rate, Retention
from ..durable.store import DEFAULT_MAX_STALLS, open_store, sqlite_file
from ..durable.worker import DEFAULT_CONCURRENCY, Worker
from ..errors import StoreError, StoreOpenError
from ..redact import redact_url
from ..supervise.defaults import DEFAULT_GRACE_S, environment_sets_any
from .cluster_options import labels_option, pool_option, registry_option
from .durable_common import DEFAULT_STORE, StoreOption, cli_errors, finite, load
from .worker_metrics import metrics_keys, metrics_served

GC_GEN0_ALLOCATIONS = 50_000  # the cyclic GC's young generation in a worker (Python's default: 700)

if TYPE_CHECKING:
    from ..cluster import Membership
    from ..supervise.worker_metrics import WorkerGroupMetrics
    from ..supervise.workers import WorkerSupervisor


def _http_url(value: str | None) -> str | None:
    if value is not None:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise typer.BadParameter(f"{redact_url(value)!r} is not an http:// or https:// URL")
    return value


def worker(
    flows: Annotated[
        str,
        typer.Option(
            "--flows", metavar="DIR_OR_MODULE", help="A directory of flow files or a module of flows."
        ),
    ],
    store: StoreOption = DEFAULT_STORE,
    queue: Annotated[
        str | None,
        typer.Option("--queue", help="The queue to take jobs from (default: --pool, else 'default')."),
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Jobs at once in this worker.")] = (
        DEFAULT_CONCURRENCY
    ),
    queue_concurrency: Annotated[
        int | None,
        typer.Option("--queue-concurrency", min=1, help="Running jobs of the queue over all workers."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", metavar="N/WINDOW", help="Queue-wide claim rate, e.g. 5/1s, 100/m."),
    ] = None,
    lease: Annotated[
        float, typer.Option("--lease", metavar="S", min=0.1, callback=finite, help="Lease of a claimed job.")
    ] = 30.0,
    worker_id: Annotated[
        str | None,
        typer.Option(
            "--worker-id", help="A stable id: a restarted worker takes back its unfinished jobs at once."
        ),
    ] = None,
    max_stalls: Annotated[
        int,
        typer.Option(
            "--max-stalls",
            min=0,
            help="Stalls (crashes, expired leases) a job may have before it fails, beyond its attempts.",
        ),
    ] = DEFAULT_MAX_STALLS,
    keep_completed: Annotated[
        float | None,
        typer.Option(
            "--keep-completed",
            metavar="S",
            min=0,
            callback=finite,
            help="Delete completed jobs older than S.",
        ),
    ] = None,
    keep_completed_count: Annotated[
        int | None,
        typer.Option("--keep-completed-count", metavar="N", min=0, help="Keep the newest N completed jobs."),
    ] = None,
    keep_failed: Annotated[
        float | None,
        typer.Option(
            "--keep-failed",
            metavar="S",
            min=0,
            callback=finite,
            help="Delete failed/cancelled jobs older than S.",
        ),
    ] = None,
    alert_running_over: Annotated[
        float | None,
        typer.Option(
            "--alert-running-over", metavar="S", min=0, callback=finite, help="Alert on jobs running longer."
        ),
    ] = None,
    alert_failure_rate: Annotated[
        float | None,
        typer.Option(
            "--alert-failure-rate",
            metavar="R",
            min=0.0,
            max=1.0,
            help="Alert above this failure share (0..1).",
        ),
    ] = None,
    alert_window: Annotated[
        float, typer.Option("--alert-window", metavar="S", min=0.001, callback=finite)
    ] = 300.0,
    alert_webhook: Annotated[
        str | None,
        typer.Option("--alert-webhook", metavar="URL", callback=_http_url, help="POST alerts to this URL."),
    ] = None,
    shutdown_grace: Annotated[
        float | None,
        typer.Option(
            "--grace-s",
            "--shutdown-grace",
            metavar="S",
            help="On SIGTERM, let running jobs finish for S; then give them back and exit "
            "(default: WEIRFLOW_GRACE_S, else 10).",
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            help="Worker processes under a supervisor that replaces a dead or hung one.",
        ),
    ] = 1,
    health_interval_s: Annotated[
        float | None,
        typer.Option("--health-interval-s", metavar="S", help="With --processes: most time between checks."),
    ] = None,
    health_failures: Annotated[
        int | None,
        typer.Option(
            "--health-failures", metavar="N", help="With --processes: failed checks to replace one."
        ),
    ] = None,
    max_rss_mb: Annotated[
        float | None,
        typer.Option("--max-rss-mb", metavar="MB", help="With --processes: replace one past this memory."),
    ] = None,
    schedules: Annotated[
        bool,
        typer.Option("--schedules/--no-schedules", help="Fire the queue's schedules' ticks."),
    ] = True,
    registry: Annotated[str | None, registry_option("register this worker as a node of the cluster")] = None,
    pool: Annotated[str | None, pool_option("The node's pool (default: the queue's name).")] = None,
    labels: Annotated[list[str] | None, labels_option("A label of the node (repeat for more).")] = None,
    capacity: Annotated[
        int | None,
        typer.Option(
            "--capacity",
            min=1,
            help="Jobs assigned to the node at once, queued or running (default: --concurrency).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            metavar="N",
            min=0,
            max=65535,
            help="Serve Prometheus metrics at http://HOST:N/metrics (0: a free port, printed).",
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host",
            metavar="HOST",
            help="Address for --metrics-port; beyond loopback it needs WEIRFLOW_API_KEYS.",
        ),
    ] = "127.0.0.1",
) -> None:
    """Run durable jobs of a queue until SIGTERM or SIGINT (then finish or give back running jobs)."""
    with cli_errors():
        if registry is None:  # (neither --registry nor WEIRFLOW_REGISTRY)
            given = [f for f, v in (("--pool", pool), ("--labels", labels), ("--capacity", capacity)) if v]
            if given:
                verb = "needs" if len(given) == 1 else "need"
                raise ValueError(f"{', '.join(given)} {verb} --registry URL (the node registry to join)")
        # ``engine.submit(..., pool=P)`` puts the job in queue ``P`` unless told another
        # queue, so a node of pool ``P`` serves queue ``P`` unless told another queue
        queue = queue if queue is not None else pool or "default"
        loaded = load(flows)
        retention = None
        if keep_completed is not None or keep_completed_count is not None or keep_failed is not None:
            retention = Retention(keep_completed, keep_completed_count, keep_failed)
        alerts = None
        if alert_running_over is not None or alert_failure_rate is not None:
            alerts = AlertRules(
                long_running_s=alert_running_over,
                failure_rate=alert_failure_rate,
                failure_window_s=alert_window,
                webhook_url=alert_webhook,
            )
        flags = {
            "grace_s": shutdown_grace,
            "health_interval_s": health_interval_s,
            "health_failures": health_failures,
            "max_rss_mb": max_rss_mb,
        }
        settings: Any = None
        grace_s = DEFAULT_GRACE_S
        # one worker uses the grace alone: with no setting given (no flag, no WEIRFLOW_*),
        # it is the default, taken without building the pydantic-settings model
        if processes > 1 or environment_sets_any() or any(v is not None for v in flags.values()):
            from ..supervise.settings import load_supervise_settings

            settings = load_supervise_settings(from_flags=True, **flags)
            grace_s = settings.grace_s
        options: dict[str, Any] = {
            "queue": queue,
            "concurrency": concurrency,
            "queue_concurrency": queue_concurrency,
            "rate": Rate.parse(rate) if rate else None,
            "lease_s": lease,
            "max_stalls": max_stalls,
            "retention": retention,
            "alerts": alerts,
            "shutdown_grace_s": grace_s,
            "schedules": schedules,
        }
        if processes > 1:
            if registry is not None:
                raise ValueError("--registry is not supported with --processes > 1 (yet): run one per node")
            from ..supervise.worker_metrics import WorkerGroupMetrics

            keys = metrics_keys(metrics_host) if metrics_port is not None else {}
            group = WorkerGroupMetrics()
            served = functools.partial(metrics_served, group, host=metrics_host, port=metrics_port, keys=keys)
            watched = store if metrics_port is not None else None  # its queue gauges, on a scrape
            _supervise(store, flows, loaded, processes, options, worker_id, settings, group, served, watched)
            return
        keys = metrics_keys(metrics_host) if metrics_port is not None else {}
        the_store = open_store(store)  # (opened in ``_run``: a bad URL is refused before)
        metrics = None
        if metrics_port is not None:  # (counted only to be served: prometheus-client when asked)
            from ..durable.metrics import QueueMetrics

            metrics = QueueMetrics()
            metrics.watch_store(the_store)
        path = sqlite_file(store)
        made = f" (a new store: {path})" if path is not None and not path.exists() else ""
        # a def handler's thread cannot be stopped: the process ends after the grace
        the_worker = Worker(
            the_store, loaded, worker_id=worker_id, exit_after_grace=True, metrics=metrics, **options
        )
        member = None
        if registry is not None:
            from .nodes import node_membership  # (rich tables, the cluster: only for a node)

            member = node_membership(
                registry,
                the_worker,
                pool=pool or queue,
                labels=labels or [],
                capacity=capacity or concurrency,
            )
        names = ", ".join(f.name for f in loaded)
        banner = f"weirflow worker {the_worker.worker_id}: queue {queue!r}, flows: {names}{made}"
        served = functools.partial(metrics_served, metrics, host=metrics_host, port=metrics_port, keys=keys)
        asyncio.run(_run(the_worker, banner, served, member))


def _supervise(
    store: str,
    flows: str,
    loaded: list[Any],
    processes: int,
    options: dict[str, Any],
    worker_id: str | None,
    settings: Any,
    metrics: WorkerGroupMetrics,
    served: Callable[[], AbstractAsyncContextManager[None]],
    watched: str | None,
) -> None:
    from ..supervise.workers import WorkerSupervisor

    supervisor = WorkerSupervisor(
        store,
        flows,
        processes=processes,
        worker_options=options,
        worker_id=worker_id,
        settings=settings,
        metrics=metrics,
    )
    names = ", ".join(f.name for f in loaded)
    print(
        f"weirflow worker {supervisor.worker_id}: {processes} processes, queue {options['queue']!r}, "
        f"flows: {names}",
        file=sys.stderr,
        flush=True,
    )
    asyncio.run(_run_supervisor(supervisor, served, watched))


async def _run_supervisor(
    supervisor: WorkerSupervisor, served: Callable[[], AbstractAsyncContextManager[None]], store: str | None
) -> None:
    """Run the worker children until SIGTERM or SIGINT; with ``--metrics-port`` (``store``
    given), the supervisor serves the group's metrics, reading the store's queue gauges
    through a connection of its own."""
    the_store = open_store(store) if store is not None else None
    if the_store is not None:
        try:
            await the_store.open()
        except StoreOpenError:
            raise
        except StoreError as e:
            raise StoreOpenError(str(e)) from e
        supervisor.metrics.watch_store(the_store)
    try:
        async with served():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, supervisor.stop)
            await supervisor.run()
    finally:
        if the_store is not None:
            await the_store.close()


async def _run(
    the_worker: Worker,
    banner: str,
    served: Callable[[], AbstractAsyncContextManager[None]],
    member: Membership | None = None,
) -> None:
    """Open the store, then run the worker (serving its metrics with ``--metrics-port``, inside
    its node's membership with ``--registry``) until a signal stops it; the node leaves the
    cluster at the signal (the process may end when the grace is over)."""
    # opened first, before the banner: a store that cannot be opened is one line and exit 2,
    # not retried (reconnecting is for a store that was open and went away)
    try:
        await the_worker.store.open()
    except StoreOpenError:
        raise
    except StoreError as e:
        raise StoreOpenError(str(e)) from e
    try:
        async with served():  # (before the banner too: a port that is taken is one line)
            print(banner, file=sys.stderr, flush=True)
            loop = asyncio.get_running_loop()
            leaving: list[asyncio.Task[None]] = []

            def stop() -> None:
                the_worker.stop()
                if member is not None and not leaving:
                    leaving.append(loop.create_task(member.leave()))

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop)
            # what exists now (modules, flows, the worker) lives as long as the process: keep it
            # out of the cyclic GC's full collections, which otherwise scan all of it again and
            # again while thousands of short jobs are made and dropped
            gc.freeze()
            # and collect the young generation every GC_GEN0_ALLOCATIONS allocations, not
            # every 700: a job's objects are freed by reference counting as it ends (the
            # runtime releases a finished job's parts), but at 700 the collector runs every
            # few jobs and walks all objects of the jobs in flight, promoting them, only for
            # them to be freed a moment later (a third of a worker's CPU on a 3-step flow)
            gc.set_threshold(GC_GEN0_ALLOCATIONS, *gc.get_threshold()[1:])
            if member is None:
                await the_worker.run()
                return
            from ..cluster.dispatch import Reassigner

            await member.start()
            reassigner = Reassigner(member.registry, the_worker.store, node_id=member.node_id)
            reassigner.start()
            try:
                await the_worker.run()
            finally:
                await reassigner.stop()
                await member.stop()
    finally:
        await the_worker.store.close()
