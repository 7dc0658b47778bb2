"""A worker's settings given from Python: a number no setting means (``nan``, the
infinities, a negative age) is a ``ValueError`` naming the setting, at once, instead of a
worker that silently never renews its leases (``lease_s=inf``: a dead worker's job would
never be taken over), never deletes (``nan`` compares false with every age) or never alerts."""

from __future__ import annotations

import math

import pytest

from weirflow.durable import Retention
from weirflow.durable.alerts import AlertRules
from weirflow.durable.worker import Worker

from .flows import noop

BAD_NUMBERS = [math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("lease_s", [*BAD_NUMBERS, 0.0, -1.0])
def test_a_lease_that_is_not_a_finite_positive_number_is_refused(lease_s: float) -> None:
    with pytest.raises(ValueError, match="lease_s must be a finite number"):
        Worker("memory://", [noop], lease_s=lease_s)


@pytest.mark.parametrize("field", ["keep_completed_s", "keep_failed_s"])
@pytest.mark.parametrize("value", [*BAD_NUMBERS, -1.0])
def test_a_retention_age_that_is_not_a_finite_number_of_seconds_is_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Retention(**{field: value})


def test_a_negative_retention_count_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_completed_count"):
        Retention(keep_completed_count=-1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *[("long_running_s", v) for v in [*BAD_NUMBERS, -1.0]],
        *[("failure_window_s", v) for v in [*BAD_NUMBERS, 0.0]],
        *[("webhook_timeout_s", v) for v in [*BAD_NUMBERS, 0.0]],
        *[("failure_rate", v) for v in [math.nan, -0.1, 1.5]],
    ],
)
def test_alert_rules_that_could_never_fire_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        AlertRules(**{field: value})


def test_the_settings_users_give_are_kept() -> None:
    assert Retention(keep_completed_s=0, keep_completed_count=0, keep_failed_s=86400).keep_failed_s == 86400
    rules = AlertRules(long_running_s=0, failure_rate=1.0, failure_window_s=0.001)
    assert rules.failure_rate == 1.0
    worker = Worker("memory://", [noop], lease_s=0.1)
    assert worker.lease_s == 0.1
