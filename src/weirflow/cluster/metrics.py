"""Metrics of one ``Registry``: kept on the registry object, in a Prometheus registry of its own.

Redis latency is kept as the last ``LATENCY_WINDOW`` call durations (quantiles are
computed when asked, so a call costs one deque append), plus counters: calls,
failures, deadline misses, mode switches, relists, replays and events applied.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .registry import Registry

LATENCY_WINDOW = 10_000
QUANTILES = (0.5, 0.95, 0.99)


def quantile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of already sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[rank]


class RegistryMetrics(Collector):
    """Counters and latency of one registry; ``render()`` gives the Prometheus text."""

    def __init__(self) -> None:
        self.latencies_s: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.calls = 0
        self.failures = 0
        self.deadline_misses = 0
        self.mode_switches = 0
        self.follow_retries = 0  # blocking reads that failed, then a confirming read did not
        self.relists = 0
        self.replays = 0
        self.rewinds = 0
        self.events_applied = 0
        self.registry: Registry | None = None
        self.prometheus = CollectorRegistry()
        self.prometheus.register(self)

    def observe(self, duration_s: float, *, failed: bool, deadline_missed: bool) -> None:
        self.calls += 1
        self.latencies_s.append(duration_s)
        if failed:
            self.failures += 1
        if deadline_missed:
            self.deadline_misses += 1

    def latency_quantiles_s(self) -> dict[float, float]:
        values = sorted(self.latencies_s)
        return {q: quantile(values, q) for q in QUANTILES}

    def snapshot(self) -> dict[str, object]:
        """Everything as plain values (for ``/readyz``, the CLI and tests)."""
        q = self.latency_quantiles_s()
        return {
            "redis_latency_s": {"p50": q[0.5], "p95": q[0.95], "p99": q[0.99]},
            "calls": self.calls,
            "failures": self.failures,
            "deadline_misses": self.deadline_misses,
            "mode_switches": self.mode_switches,
            "follow_retries": self.follow_retries,
            "relists": self.relists,
            "replays": self.replays,
            "rewinds": self.rewinds,
            "events_applied": self.events_applied,
        }

    def render(self) -> bytes:
        return generate_latest(self.prometheus)

    def collect(self) -> Iterator[Metric]:
        latency = GaugeMetricFamily(
            "weirflow_cluster_redis_latency_seconds",
            f"Redis call latency over the last {LATENCY_WINDOW} calls, by quantile.",
            labels=("quantile",),
        )
        for q, v in self.latency_quantiles_s().items():
            latency.add_metric((str(q),), v)
        yield latency
        for name, doc, value in (
            ("redis_calls", "Redis calls made.", self.calls),
            ("redis_failures", "Redis calls that failed (errors and deadline misses).", self.failures),
            ("deadline_misses", "Redis calls that ran past their deadline.", self.deadline_misses),
            ("mode_switches", "Changes of the registry's status.", self.mode_switches),
            (
                "follow_retries",
                "Blocking log reads that failed and were confirmed by a read that did not block.",
                self.follow_retries,
            ),
            ("relists", "Full lists of the registry (start, trimmed log, lost data).", self.relists),
            ("replays", "Reconnections that replayed the log from the last revision.", self.replays),
            ("events_applied", "Log entries applied to the cache.", self.events_applied),
        ):
            counter = CounterMetricFamily(f"weirflow_cluster_{name}", doc)
            counter.add_metric((), value)
            yield counter
        if self.registry is not None:
            reg = self.registry
            for name, doc, gvalue in (
                ("revision", "Last revision applied to the cache.", float(reg.revision)),
                ("staleness_seconds", "Seconds since the cache was last known current.", reg.staleness_s),
                ("nodes", "Live nodes in the cache.", float(len(reg.nodes()))),
            ):
                gauge = GaugeMetricFamily(f"weirflow_cluster_{name}", doc)
                gauge.add_metric((), gvalue)
                yield gauge
            status = GaugeMetricFamily(
                "weirflow_cluster_status", "1 for the registry's current status.", labels=("status",)
            )
            for s in ("normal", "degraded", "recovering", "starting"):
                status.add_metric((s,), 1.0 if reg.status == s else 0.0)
            yield status
