"""Prometheus metrics of one ``Engine``, in a registry of its own (no global registry).

``EngineMetrics(engine_hooks...)`` owns a ``CollectorRegistry`` with:

- a collector that reads the engine *at scrape time* (so it costs nothing between
  scrapes): per unfinished job and slot ``weirflow_slot_queue_size``,
  ``_capacity``, ``_usage_ratio``, ``_in_flight``, ``_blocked_emitters``, and the
  counters ``weirflow_slot_enqueued_total``, ``_processed_total``,
  ``_dead_lettered_total``, ``_blocked_seconds_total``; ``weirflow_jobs`` by flow
  and status;
- ``weirflow_handler_duration_seconds`` (histogram by flow and routine) and
  ``weirflow_handler_errors_total``, fed by a runtime hook (``hooks``);
- ``weirflow_dead_letters_total`` by flow and reason (also a hook);
- ``weirflow_breakpoint_hits_total`` by flow and breakpoint, counted by the
  debugger through ``breakpoint_hit``.

``collect`` reads job state and must run on the engine's event loop thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .runtime.hooks import Hooks
from .runtime.results import JobStatus

if TYPE_CHECKING:
    from .runtime.engine import Engine
    from .runtime.job import Job
    from .runtime.results import DeadLetter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_SLOT_GAUGES = (
    ("queue_size", "size", "Items waiting in the slot."),
    ("capacity", "capacity", "Capacity of the slot."),
    ("usage_ratio", "usage", "size / capacity."),
    ("in_flight", "in_flight", "Items handed to a running handler call."),
    ("blocked_emitters", "blocked_emitters", "Emitters waiting for room."),
)
_SLOT_COUNTERS = (
    ("enqueued", "enqueued", "Items that entered the slot."),
    ("processed", "processed", "Items a handler finished."),
    ("dead_lettered", "dead_lettered", "Items dead-lettered from the slot."),
    ("blocked_seconds", "blocked_s", "Seconds emitters spent waiting for room (summed)."),
)
_SLOT_LABELS = ("flow", "job", "slot")


class EngineCollector(Collector):
    """Reads every unfinished job's slots and every job's status when scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        gauges = {
            attr: GaugeMetricFamily(f"weirflow_slot_{name}", doc, labels=_SLOT_LABELS)
            for name, attr, doc in _SLOT_GAUGES
        }
        counters = {
            attr: CounterMetricFamily(f"weirflow_slot_{name}", doc, labels=_SLOT_LABELS)
            for name, attr, doc in _SLOT_COUNTERS
        }
        jobs = GaugeMetricFamily("weirflow_jobs", "Known jobs by flow and status.", labels=("flow", "status"))
        counts: dict[tuple[str, str], int] = {
            (flow, s.value): 0 for flow in self.engine.flows for s in JobStatus
        }
        for job in list(self.engine.jobs.values()):
            key = (job.flow.name, job.status.value)
            counts[key] = counts.get(key, 0) + 1
            if job.finished:
                continue
            for path, stats in job.queues().items():
                labels = (job.flow.name, job.id, path)
                for attr, family in gauges.items():
                    family.add_metric(labels, float(getattr(stats, attr)))
                for attr, cfamily in counters.items():
                    cfamily.add_metric(labels, float(getattr(stats, attr)))
        for (flow, status), n in sorted(counts.items()):
            jobs.add_metric((flow, status), n)
        yield jobs
        yield from gauges.values()
        yield from counters.values()


class _HandlerHooks(Hooks):
    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics

    def on_handler_end(
        self, job: Job, routine: str, item: Any, error: BaseException | None, duration_s: float
    ) -> None:
        m = self.metrics
        m.handler_duration.labels(job.flow.name, routine).observe(duration_s)
        if error is not None:
            m.handler_errors.labels(job.flow.name, routine).inc()

    def on_dead_letter(self, job: Job, letter: DeadLetter) -> None:
        self.metrics.dead_letters.labels(job.flow.name, letter.reason).inc()


class EngineMetrics:
    """The metrics of one engine: pass ``hooks`` to ``Engine(hooks=...)``, then ``watch(engine)``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.handler_duration = Histogram(
            "weirflow_handler_duration_seconds",
            "Duration of handler calls (and on_end).",
            ("flow", "routine"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.handler_errors = Counter(
            "weirflow_handler_errors",
            "Handler calls that raised.",
            ("flow", "routine"),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "weirflow_dead_letters", "Dead-lettered items.", ("flow", "reason"), registry=self.registry
        )
        self.breakpoint_hits = Counter(
            "weirflow_breakpoint_hits", "Breakpoint hits.", ("flow", "breakpoint"), registry=self.registry
        )
        self.hooks: Hooks = _HandlerHooks(self)
        self._collector: EngineCollector | None = None

    def watch(self, engine: Engine) -> None:
        """Report ``engine``'s jobs and slots at scrape time."""
        if self._collector is not None:
            raise RuntimeError("these metrics already watch an engine")
        self._collector = EngineCollector(engine)
        self.registry.register(self._collector)

    def breakpoint_hit(self, flow: str, breakpoint: str) -> None:
        self.breakpoint_hits.labels(flow, breakpoint).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of everything (call on the engine's loop)."""
        return generate_latest(self.registry)
