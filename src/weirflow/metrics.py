"""Prometheus metrics of one ``Engine``, in a registry of its own (no global registry).

``EngineMetrics`` owns a ``CollectorRegistry`` with one collector that renders,
at scrape time:

- read from the engine, by flow and slot (no per-job label, so the number of
  series does not grow with the number of jobs): ``weirflow_slot_queue_size``,
  ``_capacity``, ``_in_flight``, ``_blocked_emitters`` summed over the flow's
  unfinished jobs, ``_usage_ratio`` the highest among them, and the counters
  ``weirflow_slot_enqueued_total``, ``_processed_total``,
  ``_dead_lettered_total``, ``_blocked_seconds_total`` over every job of the flow
  (a finished job's final counts are kept, so the counters never go down);
  ``weirflow_jobs`` by flow and status; ``weirflow_hook_errors_total`` by hook class and hook point (hooks
  that raised, contained: see ``weirflow.Hooks``);
- counted by a runtime hook (``hooks``, pass it to ``Engine(hooks=...)``):
  ``weirflow_handler_duration_seconds`` (histogram by flow and routine),
  ``weirflow_handler_errors_total``, ``weirflow_dead_letters_total`` (by flow and
  reason);
- counted by the debugger through ``breakpoint_hit``:
  ``weirflow_breakpoint_hits_total`` (by flow and breakpoint).

The hook keeps plain counters instead of ``prometheus_client.Histogram``: the
latter takes a lock and looks labels up on every call, which cost more than half
of a three-routine chain's throughput. Everything here (the hook, ``collect``)
runs on the engine's event loop thread, so no lock is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .runtime.hooks import Hooks
from .runtime.results import JobStatus

if TYPE_CHECKING:
    from .runtime.engine import Engine
    from .runtime.job import Job
    from .runtime.results import DeadLetter, JobResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_SLOT_GAUGES = (
    ("queue_size", "size", "Items waiting in the slot (summed over the flow's unfinished jobs)."),
    ("capacity", "capacity", "Capacity of the slot (summed over the flow's unfinished jobs)."),
    ("usage_ratio", "usage", "The highest size / capacity among the flow's unfinished jobs."),
    ("in_flight", "in_flight", "Items handed to a running handler call."),
    ("blocked_emitters", "blocked_emitters", "Emitters waiting for room."),
)
_SLOT_COUNTERS = (
    ("enqueued", "enqueued", "Items that entered the slot."),
    ("processed", "processed", "Items a handler finished."),
    ("dead_lettered", "dead_lettered", "Items dead-lettered from the slot."),
    ("blocked_seconds", "blocked_s", "Seconds emitters spent waiting for room (summed)."),
)
_COUNTED = tuple(attr for _, attr, _ in _SLOT_COUNTERS)
_SLOT_LABELS = ("flow", "slot")
_SUMMED_GAUGES = ("size", "capacity", "in_flight", "blocked_emitters")


class _Durations:
    """One histogram series: counts per bucket (not cumulative), count, sum, errors."""

    __slots__ = ("buckets", "count", "errors", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0
        self.errors = 0

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*DURATION_BUCKETS, float("inf")), self.buckets, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out


class _Counting(Hooks):
    def __init__(self, metrics: EngineMetrics) -> None:
        self.durations = metrics.durations
        self.dead_letters = metrics.dead_letters
        self.retired = metrics.retired

    def on_job_result(self, job: Job, result: JobResult) -> None:
        # the job's counts are final: keep them, so the flow's counters stay monotonic after
        # the job is no longer read live (a job's result is set in the same step: no double count)
        for path, stats in result.stats.slots.items():  # (job.queues() now, built once already)
            totals = self.retired.setdefault((job.flow.name, path), dict.fromkeys(_COUNTED, 0.0))
            for attr in _COUNTED:
                totals[attr] += float(getattr(stats, attr))

    def on_handler_end(
        self, job: Job, routine: str, item: Any, error: BaseException | None, duration_s: float
    ) -> None:
        key = (job.flow.name, routine)
        d = self.durations.get(key)
        if d is None:
            d = self.durations[key] = _Durations()
        d.buckets[bisect_left(DURATION_BUCKETS, duration_s)] += 1
        d.count += 1
        d.sum += duration_s
        if error is not None:
            d.errors += 1

    def on_dead_letter(self, job: Job, letter: DeadLetter) -> None:
        key = (job.flow.name, letter.reason)
        self.dead_letters[key] = self.dead_letters.get(key, 0) + 1


class EngineMetrics(Collector):
    """The metrics of one engine: pass ``hooks`` to ``Engine(hooks=...)``, then ``watch(engine)``."""

    def __init__(self) -> None:
        self.durations: dict[tuple[str, str], _Durations] = {}
        self.dead_letters: dict[tuple[str, str], int] = {}
        self.breakpoint_hits: dict[tuple[str, str], int] = {}
        self.retired: dict[tuple[str, str], dict[str, float]] = {}  # (flow, slot) -> finished jobs' counts
        self.hooks: Hooks = _Counting(self)
        self.engine: Engine | None = None
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def watch(self, engine: Engine) -> None:
        """Report ``engine``'s jobs and slots at scrape time."""
        self.engine = engine

    def breakpoint_hit(self, flow: str, breakpoint: str) -> None:
        key = (flow, breakpoint)
        self.breakpoint_hits[key] = self.breakpoint_hits.get(key, 0) + 1

    def render(self) -> bytes:
        """The Prometheus text exposition of everything (call on the engine's loop)."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        if self.engine is not None:
            yield from _engine_families(self.engine, self.retired)
        durations = HistogramMetricFamily(
            "weirflow_handler_duration_seconds",
            "Duration of handler calls (and on_end).",
            labels=("flow", "routine"),
        )
        errors = CounterMetricFamily(
            "weirflow_handler_errors", "Handler calls that raised.", labels=("flow", "routine")
        )
        for (flow, routine), d in sorted(self.durations.items()):
            durations.add_metric((flow, routine), d.cumulative(), d.sum)
            errors.add_metric((flow, routine), d.errors)
        yield durations
        yield errors
        yield _counter("weirflow_dead_letters", "Dead-lettered items.", ("flow", "reason"), self.dead_letters)
        yield _counter(
            "weirflow_breakpoint_hits", "Breakpoint hits.", ("flow", "breakpoint"), self.breakpoint_hits
        )


def _counter(
    name: str, doc: str, labels: tuple[str, str], values: dict[tuple[str, str], int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, n in sorted(values.items()):
        family.add_metric(key, n)
    return family


def _engine_families(engine: Engine, retired: dict[tuple[str, str], dict[str, float]]) -> Iterator[Metric]:
    """Every flow's slots (live jobs read now, finished ones from ``retired``) and every
    job's status."""
    live: dict[tuple[str, str], dict[str, float]] = {}
    counts: dict[tuple[str, str], int] = {(flow, s.value): 0 for flow in engine.flows for s in JobStatus}
    for job in list(engine.jobs.values()):
        key = (job.flow.name, job.status.value)
        counts[key] = counts.get(key, 0) + 1
        if job.result is not None:
            continue  # final: its counts are in ``retired``
        for path, stats in job.queues().items():
            agg = live.get((job.flow.name, path))
            if agg is None:
                agg = live[(job.flow.name, path)] = dict.fromkeys((*_SUMMED_GAUGES, *_COUNTED, "usage"), 0.0)
            for attr in (*_SUMMED_GAUGES, *_COUNTED):
                agg[attr] += float(getattr(stats, attr))
            agg["usage"] = max(agg["usage"], float(stats.usage))
    gauges = {
        attr: GaugeMetricFamily(f"weirflow_slot_{name}", doc, labels=_SLOT_LABELS)
        for name, attr, doc in _SLOT_GAUGES
    }
    counters = {
        attr: CounterMetricFamily(f"weirflow_slot_{name}", doc, labels=_SLOT_LABELS)
        for name, attr, doc in _SLOT_COUNTERS
    }
    for key in sorted(live.keys() | retired.keys()):
        now = live.get(key)
        if now is not None:
            for attr, family in gauges.items():
                family.add_metric(key, now[attr])
        done = retired.get(key, {})
        for attr, cfamily in counters.items():
            cfamily.add_metric(key, done.get(attr, 0.0) + (now[attr] if now is not None else 0.0))
    jobs = GaugeMetricFamily("weirflow_jobs", "Known jobs by flow and status.", labels=("flow", "status"))
    for (flow, status), n in sorted(counts.items()):
        jobs.add_metric((flow, status), n)
    yield jobs
    yield _counter(
        "weirflow_hook_errors", "Exceptions hooks raised (contained).", ("hook", "point"), engine.hook_errors
    )
    yield from gauges.values()
    yield from counters.values()
