from __future__ import annotations

import pytest

from weirflow.supervise import AdaptiveInterval, HealthState, RttEstimator


def test_deadline_is_max_before_any_sample() -> None:
    assert RttEstimator(min_s=0.01, max_s=2).deadline_s == 2


def test_rfc6298_smoothing() -> None:
    est = RttEstimator(min_s=0.0001, max_s=100)
    est.observe(0.1)
    assert est.srtt_s == pytest.approx(0.1)
    assert est.rttvar_s == pytest.approx(0.05)
    assert est.deadline_s == pytest.approx(0.1 + 4 * 0.05)
    est.observe(0.2)
    # RTTVAR <- 3/4 * 0.05 + 1/4 * |0.1 - 0.2|; SRTT <- 7/8 * 0.1 + 1/8 * 0.2
    assert est.rttvar_s == pytest.approx(0.75 * 0.05 + 0.25 * 0.1)
    assert est.srtt_s == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)


def test_deadline_is_clamped_and_adapts_to_slow_round_trips() -> None:
    est = RttEstimator(min_s=0.05, max_s=1.0)
    for _ in range(50):
        est.observe(0.001)
    assert est.deadline_s == 0.05  # fast answers: the minimum
    for _ in range(50):
        est.observe(0.3)
    assert 0.3 < est.deadline_s <= 1.0  # slow answers: a longer deadline
    for _ in range(50):
        est.observe(5.0)
    assert est.deadline_s == 1.0


def test_timeout_doubles_until_the_next_sample() -> None:
    est = RttEstimator(min_s=0.05, max_s=1.0)
    for _ in range(20):
        est.observe(0.02)
    base = est.deadline_s
    est.timed_out()
    assert est.deadline_s == pytest.approx(min(1.0, 2 * base))
    est.observe(0.02)
    assert est.deadline_s <= base


def test_percentiles() -> None:
    est = RttEstimator(min_s=0.01, max_s=1)
    assert est.percentile_s(0.5) is None
    for ms in range(1, 101):
        est.observe(ms / 1000)
    assert est.percentile_s(0.5) == pytest.approx(0.051)
    assert est.percentile_s(0.99) == pytest.approx(0.1)


def test_interval_lengthens_while_healthy_and_shortens_on_failure() -> None:
    iv = AdaptiveInterval(max_s=1.0)
    assert iv.current_s == 0.25
    seen = [iv.ok() for _ in range(5)]
    assert seen == sorted(seen)
    assert seen[-1] == 1.0
    assert iv.failed() == 0.25


def test_health_state_counts_consecutive_failures_and_renders() -> None:
    h = HealthState(interval_s=1.0)
    assert h.deadline_s == 0.5  # at most half the interval
    h.ok(0.002)
    assert h.failures == 0
    assert h.last_ok_at is not None
    assert h.failed() == 1
    assert h.failed() == 2
    snap = h.snapshot()
    assert snap["failures"] == 2
    assert snap["interval_s"] == 0.25
    assert snap["rtt_ms"]["p50"] == pytest.approx(2.0)
    h.ok(0.002)
    assert h.failures == 0


def test_n_failures_fit_the_replacement_bound() -> None:
    """From the last healthy answer, n failed checks take at most interval * n + deadline."""
    for interval_s in (0.2, 1.0, 5.0):
        for n in (1, 3, 5):
            h = HealthState(interval_s=interval_s)
            for _ in range(20):
                h.ok(0.001)
            elapsed = 0.0
            for _ in range(n):
                elapsed += h.interval_s + h.deadline_s
                h.failed()
            assert elapsed <= interval_s * n + h.deadline_s + 1e-9
