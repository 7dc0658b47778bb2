from __future__ import annotations

import random

import pytest

from weirflow.supervise import GiveUp, Restart, RestartTracker


def tracker(**kw: object) -> RestartTracker:
    kw.setdefault("rng", random.Random(7))
    return RestartTracker(**kw)  # type: ignore[arg-type]


def test_permanent_restarts_after_any_exit() -> None:
    t = tracker(policy="permanent", jitter=0)
    t.started(now=0)
    assert isinstance(t.exited(abnormal=False, why="exit code 0", now=1), Restart)
    t.started(now=1)
    assert isinstance(t.exited(abnormal=True, why="killed by SIGKILL", now=2), Restart)


def test_transient_restarts_only_after_an_abnormal_exit() -> None:
    t = tracker(policy="transient")
    t.started(now=0)
    assert isinstance(t.exited(abnormal=True, why="exit code 1", now=1), Restart)
    t.started(now=1)
    d = t.exited(abnormal=False, why="exit code 0", now=2)
    assert isinstance(d, GiveUp)
    assert not d.failed
    assert "exit code 0" in d.reason


def test_temporary_never_restarts() -> None:
    t = tracker(policy="temporary")
    t.started(now=0)
    d = t.exited(abnormal=True, why="killed by SIGKILL", now=1)
    assert isinstance(d, GiveUp)
    assert not d.failed


def test_more_than_intensity_restarts_in_period_fails_with_reason() -> None:
    t = tracker(intensity=3, period_s=10, jitter=0)
    for i in range(3):
        t.started(now=i)
        assert isinstance(t.exited(abnormal=True, why="exit code 1", now=i + 0.5), Restart)
    t.started(now=3)
    d = t.exited(abnormal=True, why="exit code 1", now=3.5)
    assert isinstance(d, GiveUp)
    assert d.failed
    assert "intensity" in d.reason


def test_restarts_older_than_the_period_no_longer_count() -> None:
    t = tracker(intensity=2, period_s=10, jitter=0)
    for now in (0.0, 1.0):
        t.started(now=now)
        assert isinstance(t.exited(abnormal=True, why="x", now=now + 0.1), Restart)
    t.started(now=20)
    assert isinstance(t.exited(abnormal=True, why="x", now=20.5), Restart)


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    t = tracker(intensity=100, initial_s=0.1, factor=2, max_s=0.5, jitter=0, stable_s=1000)
    delays = []
    for i in range(6):
        t.started(now=i)
        d = t.exited(abnormal=True, why="x", now=i + 0.01)
        assert isinstance(d, Restart)
        delays.append(d.delay_s)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])


def test_jitter_shortens_within_its_fraction() -> None:
    t = tracker(intensity=1000, initial_s=1.0, max_s=1.0, jitter=0.2)
    seen = {round(t.backoff_s(1), 6) for _ in range(50)}
    assert len(seen) > 10
    assert all(0.8 <= d <= 1.0 for d in seen)


def test_backoff_resets_after_a_stable_run() -> None:
    t = tracker(intensity=100, initial_s=0.1, factor=2, max_s=10, jitter=0, stable_s=5)
    for i in range(3):
        t.started(now=i)
        t.exited(abnormal=True, why="x", now=i + 0.1)
    t.started(now=10)
    d = t.exited(abnormal=True, why="x", now=20)  # ran 10 s >= stable_s
    assert isinstance(d, Restart)
    assert d.delay_s == pytest.approx(0.1)
    assert d.count == 4


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="restart must be one of"):
        RestartTracker(policy="sometimes")
    with pytest.raises(ValueError, match="initial_s <= max_s"):
        RestartTracker(initial_s=2, max_s=1)
