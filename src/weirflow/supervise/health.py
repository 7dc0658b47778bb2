"""Adaptive health checks: a deadline from measured round trips, an interval that adapts.

``RttEstimator`` is RFC 6298's retransmission timer applied to one command type:
``SRTT`` and ``RTTVAR`` are smoothed with ``alpha = 1/8`` and ``beta = 1/4`` and the
deadline is ``SRTT + 4·RTTVAR``, clamped to ``[min_s, max_s]``; before the first
sample it is ``max_s`` (RFC 6298 starts from a conservative 1 s for the same
reason: nothing is known yet). A timeout doubles the deadline (up to ``max_s``)
until a sample comes in again (RFC 6298 §5.5). The last ``window`` samples give
``p50`` and ``p99``.

``AdaptiveInterval`` is the wait between two checks of one child: it starts at
``min_s``, grows by ``grow`` after each healthy check up to ``max_s``, and drops
back to ``min_s`` on a failure, so a failing child is re-checked soon. With the
defaults (``max_s`` the configured interval, ``min_s`` a quarter of it) and a
deadline of at most half the interval, ``n`` consecutive failures take at most
``interval * n + deadline`` after the last healthy answer.

``HealthState`` puts both together for one child and renders the ``health`` field
of ``PipelineInfo``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

ALPHA = 1 / 8
BETA = 1 / 4
K = 4
DEFAULT_WINDOW = 256
DEFAULT_MIN_DEADLINE_S = 0.1
DEFAULT_GROW = 1.5


class RttEstimator:
    """Round trips of one command type (RFC 6298); ``deadline_s`` for the next one."""

    def __init__(self, *, min_s: float, max_s: float, window: int = DEFAULT_WINDOW) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self.srtt_s: float | None = None
        self.rttvar_s = 0.0
        self._backed_off = 1.0
        self._samples: deque[float] = deque(maxlen=window)

    def observe(self, rtt_s: float) -> None:
        """A command of this type answered after ``rtt_s``."""
        rtt_s = max(0.0, rtt_s)
        if self.srtt_s is None:
            self.srtt_s = rtt_s
            self.rttvar_s = rtt_s / 2
        else:
            self.rttvar_s = (1 - BETA) * self.rttvar_s + BETA * abs(self.srtt_s - rtt_s)
            self.srtt_s = (1 - ALPHA) * self.srtt_s + ALPHA * rtt_s
        self._backed_off = 1.0
        self._samples.append(rtt_s)

    def timed_out(self) -> None:
        """A command of this type got no answer within its deadline: back off (x2)."""
        self._backed_off = min(self._backed_off * 2, 64.0)

    @property
    def deadline_s(self) -> float:
        if self.srtt_s is None:
            return self.max_s
        rto = max(self.min_s, self.srtt_s + K * self.rttvar_s)
        return min(self.max_s, rto * self._backed_off)

    def percentile_s(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the recent samples, ``None`` before the first."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class AdaptiveInterval:
    """The wait before a child's next check: longer while healthy, short while failing."""

    def __init__(self, *, max_s: float, min_s: float | None = None, grow: float = DEFAULT_GROW) -> None:
        low = max_s / 4 if min_s is None else min_s
        if not 0 < low <= max_s or grow < 1:
            raise ValueError("need 0 < min_s <= max_s and grow >= 1")
        self.min_s = low
        self.max_s = max_s
        self.grow = grow
        self.current_s = low

    def ok(self) -> float:
        self.current_s = min(self.max_s, self.current_s * self.grow)
        return self.current_s

    def failed(self) -> float:
        self.current_s = self.min_s
        return self.current_s


class HealthState:
    """The health of one child: consecutive failures, last healthy answer, timing."""

    def __init__(
        self,
        *,
        interval_s: float,
        min_deadline_s: float = DEFAULT_MIN_DEADLINE_S,
        max_deadline_s: float | None = None,
    ) -> None:
        top = interval_s / 2 if max_deadline_s is None else max_deadline_s
        self.rtt = RttEstimator(min_s=min(min_deadline_s, top), max_s=top)
        self.interval = AdaptiveInterval(max_s=interval_s)
        self.failures = 0
        self.last_ok_at: float | None = None  # wall clock (time.time())

    @property
    def deadline_s(self) -> float:
        return self.rtt.deadline_s

    @property
    def interval_s(self) -> float:
        return self.interval.current_s

    def ok(self, rtt_s: float) -> None:
        self.rtt.observe(rtt_s)
        self.interval.ok()
        self.failures = 0
        self.last_ok_at = time.time()

    def failed(self) -> int:
        """A check got no answer in time; returns the consecutive failures so far."""
        self.rtt.timed_out()
        self.interval.failed()
        self.failures += 1
        return self.failures

    def snapshot(self) -> dict[str, Any]:
        """The ``health`` field of ``PipelineInfo``."""
        p50 = self.rtt.percentile_s(0.5)
        p99 = self.rtt.percentile_s(0.99)
        return {
            "last_ok_at": self.last_ok_at,
            "failures": self.failures,
            "interval_s": round(self.interval_s, 6),
            "deadline_s": round(self.deadline_s, 6),
            "rtt_ms": {
                "p50": None if p50 is None else round(p50 * 1000, 3),
                "p99": None if p99 is None else round(p99 * 1000, 3),
            },
        }
