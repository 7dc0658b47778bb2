"""Prometheus metrics of durable queues, in a registry of its own (no global registry).

``QueueMetrics`` renders, at scrape time (``await render()``):

- read from the store, so the same in every process that scrapes it (``weirflow serve``
  with a store, every ``weirflow worker --metrics-port``): ``weirflow_queue_jobs`` by queue
  and status (queued, running, completed, failed, cancelled), ``weirflow_queue_delayed_jobs``
  (queued, not yet due: a delay or a retry's backoff),
  ``weirflow_queue_oldest_waiting_seconds`` (how long the due job waiting longest has
  waited) and ``weirflow_queue_stalls`` (stalls of the queue's jobs the store holds);
- counted by the workers of this process (``Worker(metrics=...)``), as Celery's and
  dramatiq's exporters count per worker (sum them over instances): the counter
  ``weirflow_queue_attempts_total`` by queue, flow and outcome (``completed``, ``failed``,
  ``retried`` — failed, queued again after its backoff —, ``lost`` — taken over after
  this worker's lease expired, or cancelled —, ``released`` — given back at shutdown),
  the histograms ``weirflow_queue_claim_latency_seconds`` (from due to claimed) and
  ``weirflow_queue_job_duration_seconds`` (from claimed to its outcome, by outcome), and
  the gauges ``weirflow_worker_running_jobs`` and ``weirflow_worker_concurrency``.

Like ``weirflow.metrics``, counting keeps plain numbers (no lock, no label lookup per
call): everything runs on the worker's event loop.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..errors import StoreError
from .models import JobRecord, QueueCounts

if TYPE_CHECKING:
    from .store import Store
    from .worker_core import WorkerCore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: claim latency and run time: from a few milliseconds to an hour
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
OUTCOMES = ("completed", "failed", "retried", "lost", "released")


class Histogram:
    """One series: counts per bucket of ``bounds_s`` (not cumulative) and the sum."""

    __slots__ = ("bounds_s", "buckets", "sum")

    def __init__(self, bounds_s: tuple[float, ...] = BUCKETS_S) -> None:
        self.bounds_s = bounds_s
        self.buckets = [0] * (len(bounds_s) + 1)
        self.sum = 0.0

    def observe(self, value_s: float) -> None:
        value_s = max(0.0, value_s)
        self.buckets[bisect_left(self.bounds_s, value_s)] += 1
        self.sum += value_s

    def add(self, buckets: list[int], total_s: float) -> None:
        for i, n in enumerate(buckets[: len(self.buckets)]):
            self.buckets[i] += int(n)
        self.sum += float(total_s)

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*self.bounds_s, float("inf")), self.buckets, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out


class QueueMetrics(Collector):
    """Durable queue metrics: ``watch_store(store)`` for the store's counts, and pass it to
    ``Worker(metrics=...)`` for the attempts that worker runs."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.workers: list[WorkerCore] = []
        self.attempts: dict[tuple[str, str, str], int] = {}  # (queue, flow, outcome)
        self.latency: dict[str, Histogram] = {}  # by queue
        self.durations: dict[tuple[str, str], Histogram] = {}  # (queue, outcome)
        self._started: dict[str, tuple[str, str, float]] = {}  # job id -> (queue, flow, claimed at)
        self._counts: list[QueueCounts] = []
        self._now = 0.0
        self._up: bool | None = None
        #: (queue, worker id, running, concurrency) of workers in other processes (``add``)
        self.reported_workers: list[tuple[str, str, int, int]] = []
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def watch_store(self, store: Store) -> None:
        """Report ``store``'s queues at scrape time."""
        self.store = store

    def watch_worker(self, worker: WorkerCore) -> None:
        """Report ``worker``'s running jobs and concurrency (``Worker`` calls it)."""
        if worker not in self.workers:
            self.workers.append(worker)

    # -- counted by the worker ------------------------------------------------------------

    def claimed(self, record: JobRecord) -> None:
        """``record`` was claimed (its ``started_at`` set by the store)."""
        at = record.started_at if record.started_at is not None else record.run_at
        self.latency.setdefault(record.queue, Histogram()).observe(at - record.run_at)
        self._started[record.id] = (record.queue, record.flow, at)

    def finished(self, job_id: str, outcome: str, now: float) -> None:
        """The attempt of ``job_id`` claimed here ended with ``outcome`` at ``now`` (the store's
        clock); a job not claimed here (or already counted) is ignored."""
        started = self._started.pop(job_id, None)
        if started is None:
            return
        queue, flow, at = started
        key = (queue, flow, outcome)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.durations.setdefault((queue, outcome), Histogram()).observe(now - at)

    # -- across processes (``weirflow worker --processes N``) -------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What this process counted, as plain data (for a supervisor to ``add`` up)."""
        return {
            "attempts": [[*key, n] for key, n in self.attempts.items()],
            "latency": [[queue, h.buckets, h.sum] for queue, h in self.latency.items()],
            "durations": [[*key, h.buckets, h.sum] for key, h in self.durations.items()],
            "workers": [[w.queue, w.worker_id, len(w.running), w.concurrency] for w in self.workers],
        }

    def add(self, snapshot: dict[str, Any], *, workers: bool = True) -> None:
        """Add another process's ``snapshot`` to these counts (and its workers' gauges)."""
        for queue, flow, outcome, n in snapshot.get("attempts", []):
            key = (queue, flow, outcome)
            self.attempts[key] = self.attempts.get(key, 0) + int(n)
        for queue, buckets, total in snapshot.get("latency", []):
            self.latency.setdefault(queue, Histogram()).add(buckets, total)
        for queue, outcome, buckets, total in snapshot.get("durations", []):
            self.durations.setdefault((queue, outcome), Histogram()).add(buckets, total)
        if workers:
            for queue, worker_id, running, concurrency in snapshot.get("workers", []):
                self.reported_workers.append((queue, worker_id, int(running), int(concurrency)))

    def reset_counts(self) -> None:
        self.attempts, self.latency, self.durations = {}, {}, {}
        self.reported_workers = []

    # -- scraping ---------------------------------------------------------------------------

    async def render(self) -> bytes:
        """The Prometheus text exposition (reads the store first, on the caller's loop). A
        store that fails is ``weirflow_queue_store_up 0``, the rest is still answered."""
        self._up = None
        if self.store is not None:
            try:
                self._counts = await self.store.queue_counts()
                self._now = self.store.clock()
                self._up = True
            except StoreError:
                self._counts, self._up = [], False
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        if self._up is not None:
            up = GaugeMetricFamily("weirflow_queue_store_up", "1 if the store answered this scrape.")
            up.add_metric((), 1 if self._up else 0)
            yield up
        yield from _store_families(self._counts, self._now)
        attempts = CounterMetricFamily(
            "weirflow_queue_attempts",
            "Attempts the workers of this process finished, by outcome.",
            labels=("queue", "flow", "outcome"),
        )
        for key, n in sorted(self.attempts.items()):
            attempts.add_metric(key, n)
        yield attempts
        latency = HistogramMetricFamily(
            "weirflow_queue_claim_latency_seconds",
            "From a job being due (submitted, or its delay or backoff over) to a worker claiming it.",
            labels=("queue",),
        )
        for queue, h in sorted(self.latency.items()):
            latency.add_metric((queue,), h.cumulative(), h.sum)
        yield latency
        durations = HistogramMetricFamily(
            "weirflow_queue_job_duration_seconds",
            "From claiming a job to its attempt's outcome.",
            labels=("queue", "outcome"),
        )
        for (queue, outcome), h in sorted(self.durations.items()):
            durations.add_metric((queue, outcome), h.cumulative(), h.sum)
        yield durations
        running = GaugeMetricFamily(
            "weirflow_worker_running_jobs", "Jobs a worker holds now.", labels=("queue", "worker")
        )
        concurrency = GaugeMetricFamily(
            "weirflow_worker_concurrency", "Jobs a worker runs at once.", labels=("queue", "worker")
        )
        for w in self.workers:
            running.add_metric((w.queue, w.worker_id), len(w.running))
            concurrency.add_metric((w.queue, w.worker_id), w.concurrency)
        for queue, worker_id, n_running, n_concurrency in self.reported_workers:
            running.add_metric((queue, worker_id), n_running)
            concurrency.add_metric((queue, worker_id), n_concurrency)
        yield running
        yield concurrency


def _store_families(counts: list[QueueCounts], now: float) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "weirflow_queue_jobs", "Jobs of the queue in the store, by status.", labels=("queue", "status")
    )
    delayed = GaugeMetricFamily(
        "weirflow_queue_delayed_jobs", "Queued jobs not yet due (a delay or a backoff).", labels=("queue",)
    )
    oldest = GaugeMetricFamily(
        "weirflow_queue_oldest_waiting_seconds",
        "How long the due job waiting longest has waited (0: none waits).",
        labels=("queue",),
    )
    stalls = GaugeMetricFamily(
        "weirflow_queue_stalls", "Stalls of the queue's jobs the store holds.", labels=("queue",)
    )
    for c in counts:
        for status, n in c.jobs.items():
            jobs.add_metric((c.queue, status), n)
        delayed.add_metric((c.queue,), c.delayed)
        waited = 0.0 if c.oldest_ready_at is None else max(0.0, now - c.oldest_ready_at)
        oldest.add_metric((c.queue,), waited)
        stalls.add_metric((c.queue,), c.stalls)
    yield from (jobs, delayed, oldest, stalls)
