"""Prometheus metrics of one ``Supervisor`` (no global registry: the supervisor owns them).

- ``weirflow_supervise_command_duration_seconds`` (histogram by command type: round
  trips of ``status``, ``send``, ``pause``...; timeouts are counted in
  ``weirflow_supervise_command_timeouts_total``);
- ``weirflow_supervise_health_check_failures_total`` (by flow);
- ``weirflow_supervise_restarts_total`` (by flow and reason: ``crash``, ``exit``,
  ``unhealthy``, ``max_rss``);
- read at scrape time: ``weirflow_supervise_child_rss_bytes`` (by pipeline) and
  ``weirflow_pipelines`` (by state), and ``weirflow_supervise_warm_spares``.

Like ``weirflow.metrics``, plain counters updated on the supervisor's loop and
rendered by a collector: no lock and no label lookup per command.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STATES = ("starting", "running", "paused", "unhealthy", "restarting", "stopping", "stopped", "failed")


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS_S) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value_s: float) -> None:
        self.buckets[bisect_left(BUCKETS_S, value_s)] += 1
        self.count += 1
        self.sum += value_s

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*BUCKETS_S, float("inf")), self.buckets, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out


class SupervisorMetrics(Collector):
    """Counters of one supervisor; ``snapshot`` (set by it) gives the live gauges."""

    def __init__(self) -> None:
        self.commands: dict[str, _Histogram] = {}
        self.timeouts: dict[str, int] = {}
        self.health_failures: dict[str, int] = {}
        self.restarts: dict[tuple[str, str], int] = {}
        #: ``() -> (pipelines as (id, name, state, rss_bytes or None), warm spares)``
        self.snapshot: Callable[[], tuple[list[tuple[str, str, str, float | None]], int]] | None = None
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def command(self, command: str, rtt_s: float) -> None:
        h = self.commands.get(command)
        if h is None:
            h = self.commands[command] = _Histogram()
        h.observe(rtt_s)

    def timed_out(self, command: str) -> None:
        self.timeouts[command] = self.timeouts.get(command, 0) + 1

    def health_failed(self, flow: str) -> None:
        self.health_failures[flow] = self.health_failures.get(flow, 0) + 1

    def restarted(self, flow: str, reason: str) -> None:
        key = (flow, reason)
        self.restarts[key] = self.restarts.get(key, 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        hist = HistogramMetricFamily(
            "weirflow_supervise_command_duration_seconds",
            "Round trips of commands to child processes, by command type.",
            labels=("command",),
        )
        for name, h in sorted(self.commands.items()):
            hist.add_metric((name,), h.cumulative(), h.sum)
        yield hist
        yield _counter(
            "weirflow_supervise_command_timeouts",
            "Commands a child did not answer in time.",
            "command",
            self.timeouts,
        )
        yield _counter(
            "weirflow_supervise_health_check_failures",
            "Failed health checks, by flow.",
            "flow",
            self.health_failures,
        )
        restarts = CounterMetricFamily(
            "weirflow_supervise_restarts", "Child restarts, by flow and reason.", labels=("flow", "reason")
        )
        for key, n in sorted(self.restarts.items()):
            restarts.add_metric(key, n)
        yield restarts
        rows: list[tuple[str, str, str, float | None]] = []
        spares = 0
        if self.snapshot is not None:
            rows, spares = self.snapshot()
        rss = GaugeMetricFamily(
            "weirflow_supervise_child_rss_bytes",
            "Resident memory of each pipeline's child.",
            labels=("pipeline", "name"),
        )
        states: dict[str, int] = dict.fromkeys(STATES, 0)
        for pid_, name, state, rss_bytes in rows:
            states[state] = states.get(state, 0) + 1
            if rss_bytes is not None:
                rss.add_metric((pid_, name), rss_bytes)
        yield rss
        gauge = GaugeMetricFamily("weirflow_pipelines", "Pipelines by state.", labels=("state",))
        for state, n in states.items():
            gauge.add_metric((state,), n)
        yield gauge
        warm = GaugeMetricFamily("weirflow_supervise_warm_spares", "Spare child processes ready.")
        warm.add_metric((), spares)
        yield warm


def _counter(name: str, doc: str, label: str, values: dict[str, Any]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=(label,))
    for key, n in sorted(values.items()):
        family.add_metric((key,), n)
    return family
