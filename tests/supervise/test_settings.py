from __future__ import annotations

import pytest

import weirflow as wf
from weirflow.errors import SuperviseError
from weirflow.supervise import load_supervise_settings


def test_defaults() -> None:
    s = load_supervise_settings()
    assert (s.health_interval_s, s.health_failures, s.grace_s, s.warm, s.max_rss_mb) == (
        1.0,
        3,
        10.0,
        0,
        None,
    )


def test_environment_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIRFLOW_HEALTH_INTERVAL_S", "0.5")
    monkeypatch.setenv("WEIRFLOW_WARM", "2")
    s = load_supervise_settings(warm=3, max_rss_mb=None)
    assert s.health_interval_s == 0.5
    assert s.warm == 3


def test_the_send_window_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_supervise_settings().unacked_capacity == 1000
    monkeypatch.setenv("WEIRFLOW_UNACKED_CAPACITY", "7")
    assert wf.Supervisor(flows="tests.supervise.flows").unacked_capacity == 7  # weirflow serve's
    assert wf.Supervisor(flows="tests.supervise.flows", unacked_capacity=3).unacked_capacity == 3


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("WEIRFLOW_HEALTH_INTERVAL_S", "0"),
        ("WEIRFLOW_HEALTH_FAILURES", "many"),
        ("WEIRFLOW_GRACE_S", "-1"),
        ("WEIRFLOW_WARM", "-2"),
        ("WEIRFLOW_MAX_RSS_MB", "0"),
        ("WEIRFLOW_KEEP_FINISHED", "-1"),
        ("WEIRFLOW_KEEP_FINISHED", "some"),
        ("WEIRFLOW_UNACKED_CAPACITY", "0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SuperviseError) as info:
        load_supervise_settings()
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(var)
    assert "\n" not in str(info.value)
