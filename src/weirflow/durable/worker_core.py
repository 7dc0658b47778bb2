"""The state of a ``Worker`` (``weirflow.durable.worker``): its configuration, the jobs
it holds with their fencing tokens, and what it does when a hold is lost; store calls
retried with backoff while the store fails.

``Worker`` is assembled from one class per concept, each a subclass of ``WorkerCore``:
``worker_leases`` (heartbeat, release), ``worker_reports`` (outcomes), ``worker_jobs``
(running one job), ``worker_upkeep`` (sweeper, schedules), ``worker_shutdown`` (the
grace period) and ``worker`` (lifecycle and the claim loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from ..errors import LeaseLostError, StoreError, StoreRefusedError
from ..flow.graph import Flow
from ..runtime.engine import Engine
from ..runtime.job import Job
from ..runtime.journal import Journal
from . import engine_journals
from .alerts import AlertRules, Alerts
from .journal import DurableJournal
from .models import DEFAULT_QUEUE, Done, Rate, Retention
from .steps import StartFence, StepJournal
from .store import DEFAULT_LEASE_S, DEFAULT_MAX_STALLS, Store, open_store

if TYPE_CHECKING:
    from .metrics import QueueMetrics

log = structlog.get_logger("weirflow.durable")
T = TypeVar("T")

DEFAULT_CONCURRENCY = 3
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
#: the longest margin ``lease_margin_s`` takes, whatever the lease
LEASE_MARGIN_MAX_S = 0.5


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class WorkerCore:
    """Configuration and state shared by the parts of ``Worker`` (see its docstring)."""

    def __init__(
        self,
        store: Store | str,
        flows: Engine | Iterable[Flow],
        *,
        queue: str = DEFAULT_QUEUE,
        concurrency: int = DEFAULT_CONCURRENCY,
        queue_concurrency: int | None = None,
        rate: Rate | str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        heartbeat_s: float | None = None,
        worker_id: str | None = None,
        max_stalls: int = DEFAULT_MAX_STALLS,
        sweep_every_s: float | None = None,
        retention: Retention | None = None,
        alerts: AlertRules | None = None,
        shutdown_grace_s: float = 30.0,
        poll_min_s: float = 0.05,
        poll_max_s: float = 1.0,
        record_steps: bool = True,
        durable: bool = True,
        schedules: bool = True,
        exit_after_grace: bool = False,
        metrics: QueueMetrics | None = None,
        node: str | None = None,
        node_capacity: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not (math.isfinite(lease_s) and lease_s > 0):  # (inf: never renewed, never expires)
            raise ValueError(f"lease_s must be a finite number of seconds > 0, not {lease_s!r}")
        if node_capacity is not None and node_capacity < 1:
            raise ValueError("node_capacity must be >= 1")
        self._owns_store = isinstance(store, str)
        self.store: Store = open_store(store) if isinstance(store, str) else store
        self._owns_engine = not isinstance(flows, Engine)
        if isinstance(flows, Engine):
            self.engine = flows
        else:
            self.engine = Engine()
            for flow in flows:
                self.engine.register(flow)
        self.queue = queue
        self.concurrency = concurrency
        self.queue_concurrency = queue_concurrency
        self.rate = Rate.parse(rate) if rate is not None else None
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else lease_s / 3
        self.worker_id = worker_id or default_worker_id()
        self.max_stalls = max_stalls
        self.sweep_every_s = sweep_every_s if sweep_every_s is not None else max(0.5, lease_s / 2)
        self.retention = retention
        self.alerts = Alerts(alerts, self.store) if alerts is not None else None
        self.shutdown_grace_s = shutdown_grace_s
        self.poll_min_s = poll_min_s
        self.poll_max_s = poll_max_s
        self.schedules = schedules
        # the cluster node this worker is (docs/cluster.md): it claims the jobs assigned to
        # it and unassigned ones, at most ``node_capacity`` at once
        self.node = node
        self.node_capacity = node_capacity

        self.exit_after_grace = exit_after_grace
        self.metrics = metrics
        if metrics is not None:
            metrics.watch_worker(self)
        self.journal: StepJournal | None = None
        self.durable: DurableJournal | None = None
        # the clock of leases here (when renewals were sent, when one may have run out)
        self._monotonic: Callable[[], float] = time.monotonic
        fence: Journal | None = None  # what asks ``_may_start`` at every step start
        if record_steps:
            self.journal = StepJournal(
                self.store, worker_id=self.worker_id, on_lost=self._lease_lost, may_start=self._may_start
            )
        elif durable:
            fence = StartFence(self._may_start)
        if durable:
            self.durable = DurableJournal(self.store, fenced=True, on_lost=self._lease_lost)
        # an engine's own journal (a LogJournal, say) is kept: every journal hears every record;
        # so are those of other workers on this engine (each detaches only its own at its stop)
        self._engine_journal = self.engine.journal  # (what it had before: the lane runs only without one)
        self._attached: list[Journal] = [j for j in (self.journal, fence, self.durable) if j is not None]
        engine_journals.attach(self.engine, self._attached)
        self.running: dict[str, Job | None] = {}  # claimed: the runtime job once started
        self._reporting: set[str] = set()  # finished here, outcome not yet in the store
        self._done: list[Done] = []
        self._tokens: dict[str, int] = {}  # the fencing token of each job held
        # when the request that last granted each lease held here was sent (monotonic):
        # the store's lease cannot run out before that time plus ``lease_s``
        self._lease_from: dict[str, float] = {}
        # claims of jobs whose earlier run here is not over yet, and what they wait on
        self._claimed_again: dict[str, int] = {}  # job id: the token of its latest claim
        self._gone: dict[str, asyncio.Event] = {}
        # job id: the tokens of its runs here that were let go (lost) while handler calls
        # of theirs still run (``Running._lost_calls_end``): a new run of it waits for them
        self._lingering: dict[str, set[int]] = {}
        self._leases_changed = asyncio.Event()  # set by a claim while the watch is idle
        self._lease_watch_idle = False
        self._lost: set[str] = set()
        self.lost = 0  # jobs this worker lost (taken over, cancelled) while it held them
        self.cut_short = False  # the grace period ended with jobs still running
        self._stopping = asyncio.Event()
        self._released = asyncio.Event()  # shutdown: the jobs cut short are given back
        self._slot_free = asyncio.Event()
        self._report_wake = asyncio.Event()
        self._reports_idle = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._job_tasks: set[asyncio.Task[None]] = set()
        self.completed = 0  # jobs this worker completed
        self.failed = 0  # jobs that failed for good here (no attempt left, or not retryable)
        self.retried = 0  # attempts that failed here and were queued again
        self.released = 0  # jobs given back at shutdown
        self.reports = 0  # claims and outcomes written to the store so far (see ``wait_reports``)
        self._reports_changed = asyncio.Condition()

    async def _retrying(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(*args)``, retried with backoff while the store fails (until ``stop()``); a
        write the store refuses for what it holds (``StoreRefusedError``) is not retried."""
        delay = RECONNECT_MIN_S
        while True:
            try:
                return await fn(*args)
            except (LeaseLostError, StoreRefusedError):
                raise  # not the store failing: the job is not ours any more, or the write never goes in
            except StoreError as e:
                if self._stopping.is_set() and what != "report":
                    raise
                log.warning(
                    "store_unavailable", worker=self.worker_id, during=what, error=str(e), retry_in_s=delay
                )
                await self._sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short by ``stop()``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # -- what this worker holds ---------------------------------------------------------

    def _lease_lost(self, job_id: str, why: str = "refused by the store") -> None:
        """The store refused a write for ``job_id`` (a stale token) or did not renew its
        lease: another worker owns it now, or it was cancelled. Stop it here at once and
        write nothing more for it."""
        if job_id not in self._tokens or job_id in self._lost:
            return
        self._lost.add(job_id)
        self.lost += 1
        self._outcome(job_id, "lost")
        log.warning("lease_lost", worker=self.worker_id, job=job_id, token=self._tokens[job_id], why=why)
        if self.journal is not None:
            self.journal.forget(job_id)
        if self.durable is not None:
            self.durable.forget(job_id)
        job = self.running.get(job_id)
        if job is not None and not job.finished:
            task = asyncio.get_running_loop().create_task(self._cancel(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if job_id not in self.running and job_id in self._reporting:
            waiting = len(self._done)
            self._done = [d for d in self._done if d[0] != job_id]
            if len(self._done) < waiting:  # its completion, not written yet, never will be
                self._reporting.discard(job_id)
                self._lost.discard(job_id)
                self._forget(job_id)
                if not self._reporting and not self._done:
                    self._reports_idle.set()

    def lease_margin_s(self) -> float:
        """How long before its lease could run out in the store a job running here is
        stopped (the time its cancellation takes, with room for a loaded machine)."""
        return min(self.lease_s / 10, LEASE_MARGIN_MAX_S)

    def _may_start(self, job_id: str) -> bool:
        """Whether a step of ``job_id`` may start here now (the journals ask before every
        step start): not when its lease was lost, nor when it may have run out in the store
        (no renewal confirmed within ``lease_s`` less ``lease_margin_s`` of when the request
        that granted it was sent), which ``_lease_watch`` would see only when its timer
        fires: a worker stopped past its lease (``SIGSTOP``) and continued runs its jobs'
        next calls first. Such a job is lost here, from now on. A job this worker does not
        hold (another worker's on a shared engine) is not this worker's to refuse."""
        if job_id in self._lost:
            return False
        sent = self._lease_from.get(job_id)
        if sent is None:
            return True
        lease_s = self.lease_s  # (``lease_margin_s`` inlined: asked at every step, a call is half the cost)
        if self._monotonic() < sent + lease_s - min(lease_s / 10, LEASE_MARGIN_MAX_S):
            return True
        self._lease_lost(job_id, f"no renewal of its {self.lease_s:g}s lease reached the store in time")
        return False

    def _outcome(self, job_id: str, outcome: str) -> None:
        """Count the end of ``job_id``'s attempt here (``weirflow.durable.metrics``)."""
        if self.metrics is not None:
            self.metrics.finished(job_id, outcome, self.store.clock())

    @staticmethod
    async def _cancel(job: Job) -> None:
        await job.cancel()

    def _forget(self, job_id: str) -> None:
        """This worker is done with ``job_id`` (reported, given back or lost)."""
        self._tokens.pop(job_id, None)
        self._lease_from.pop(job_id, None)
        gone = self._gone.get(job_id)
        if gone is not None:  # a claim of it again waits for this (``Worker._run_again``)
            gone.set()
        if self.durable is not None:
            self.durable.forget(job_id)
        if self.journal is not None:
            self.journal.forget(job_id)

    def _held(self) -> dict[str, int]:
        return {j: t for j, t in self._tokens.items() if j not in self._lost}


async def first_done(*aws: Awaitable[Any]) -> None:
    """Wait until the first of ``aws`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
