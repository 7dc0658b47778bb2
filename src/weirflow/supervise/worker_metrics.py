"""Prometheus metrics of ``weirflow worker --processes N``, served by the supervisor.

The worker children count their jobs as a single worker does (``QueueMetrics``) and
send what they counted with every answer to a health check (``status``); the
supervisor adds them up at scrape time. What a child counted goes on counting after
it ended (it is folded into the slot's past), so the counters never go back when a
child is replaced. A child that stops sends its last counts as it exits; one that is
killed loses what it counted after its last health check (at most one
``--health-interval-s``). Beside them, the supervisor's own:

- ``weirflow_worker_child_state`` (1 for each slot's state), ``weirflow_worker_children``
  (slots by state);
- ``weirflow_worker_child_restarts_total`` by slot and reason (``crash``, ``exit``,
  ``unhealthy``, ``max_rss``, ``start_failed``);
- ``weirflow_worker_child_health_check_seconds`` (histogram of health-check round trips,
  by slot) and ``weirflow_worker_child_health_failures_total`` (checks not answered in
  time);
- ``weirflow_worker_child_rss_bytes`` by slot.

Store-wide gauges (``weirflow_queue_jobs``...) come from the store, read by the
supervisor at scrape time (``watch_store``), as for one worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from ..durable.metrics import Histogram, QueueMetrics

if TYPE_CHECKING:
    from .workers import WorkerChildInfo

#: health-check round trips: from a fraction of a millisecond to the longest deadline
RTT_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STATES = ("starting", "running", "unhealthy", "restarting", "stopping", "stopped", "failed")


class WorkerGroupMetrics(QueueMetrics):
    """The metrics of a ``WorkerSupervisor`` and its children (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.children: Callable[[], list[WorkerChildInfo]] = list
        self._current: dict[int, dict[str, Any]] = {}  # slot -> its child's last snapshot
        self._past = QueueMetrics()  # what the slots' ended children counted
        self.restarts: dict[tuple[int, str], int] = {}
        self.health_failures: dict[int, int] = {}
        self.rtts: dict[int, Histogram] = {}

    # -- reported by the supervisor --------------------------------------------------------

    def reported(self, slot: int, snapshot: dict[str, Any]) -> None:
        """A child of ``slot`` answered a health check with what it counted so far."""
        self._current[slot] = snapshot

    def child_ended(self, slot: int) -> None:
        """The child of ``slot`` ended: what it counted stays counted."""
        last = self._current.pop(slot, None)
        if last is not None:
            self._past.add(last, workers=False)

    def restarted(self, slot: int, reason: str) -> None:
        key = (slot, reason)
        self.restarts[key] = self.restarts.get(key, 0) + 1

    def health_ok(self, slot: int, rtt_s: float) -> None:
        self.rtts.setdefault(slot, Histogram(RTT_BUCKETS_S)).observe(rtt_s)

    def health_failed(self, slot: int) -> None:
        self.health_failures[slot] = self.health_failures.get(slot, 0) + 1

    # -- scraping ----------------------------------------------------------------------------

    async def render(self) -> bytes:
        self.reset_counts()
        self.add(self._past.snapshot(), workers=False)
        for snapshot in self._current.values():
            self.add(snapshot)
        return await super().render()

    def collect(self) -> Iterator[Metric]:
        yield from super().collect()
        infos = self.children()
        state = GaugeMetricFamily(
            "weirflow_worker_child_state", "1 for the state each worker slot is in.", labels=("slot", "state")
        )
        by_state = GaugeMetricFamily("weirflow_worker_children", "Worker slots by state.", labels=("state",))
        rss = GaugeMetricFamily(
            "weirflow_worker_child_rss_bytes", "Resident memory of each worker child.", labels=("slot",)
        )
        counts = dict.fromkeys(STATES, 0)
        for info in infos:
            state.add_metric((str(info.slot), info.state), 1)
            counts[info.state] = counts.get(info.state, 0) + 1
            if info.rss_mb is not None:
                rss.add_metric((str(info.slot),), info.rss_mb * 1024 * 1024)
        for name, n in counts.items():
            by_state.add_metric((name,), n)
        restarts = CounterMetricFamily(
            "weirflow_worker_child_restarts",
            "Restarts of worker children, by slot and reason.",
            labels=("slot", "reason"),
        )
        for (slot, reason), n in sorted(self.restarts.items()):
            restarts.add_metric((str(slot), reason), n)
        failures = CounterMetricFamily(
            "weirflow_worker_child_health_failures",
            "Health checks a worker child did not answer in time.",
            labels=("slot",),
        )
        for slot, n in sorted(self.health_failures.items()):
            failures.add_metric((str(slot),), n)
        rtts = HistogramMetricFamily(
            "weirflow_worker_child_health_check_seconds",
            "Round trips of the health checks worker children answered.",
            labels=("slot",),
        )
        for slot, h in sorted(self.rtts.items()):
            rtts.add_metric((str(slot),), h.cumulative(), h.sum)
        yield from (state, by_state, rss, restarts, failures, rtts)
