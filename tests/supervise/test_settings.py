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


def test_the_defaults_read_without_pydantic_are_the_models() -> None:
    """``weirflow worker`` takes these when no setting is given (``supervise.defaults``)."""
    from weirflow.supervise import SuperviseSettings, defaults

    assert tuple(SuperviseSettings.model_fields) == defaults.FIELDS
    assert SuperviseSettings().model_dump() == {
        "health_interval_s": defaults.DEFAULT_HEALTH_INTERVAL_S,
        "health_failures": defaults.DEFAULT_HEALTH_FAILURES,
        "grace_s": defaults.DEFAULT_GRACE_S,
        "warm": defaults.DEFAULT_WARM,
        "max_rss_mb": None,
        "keep_finished": defaults.DEFAULT_KEEP_FINISHED,
        "unacked_capacity": defaults.DEFAULT_UNACKED_CAPACITY,
    }


@pytest.mark.parametrize("var", ["WEIRFLOW_GRACE_S", "weirflow_health_failures", "WEIRFLOW_WARM"])
def test_a_setting_in_the_environment_in_any_case_is_seen(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    from weirflow.supervise.defaults import FIELDS, environment_sets_any

    for field in FIELDS:
        monkeypatch.delenv(f"WEIRFLOW_{field.upper()}", raising=False)
    assert not environment_sets_any()
    monkeypatch.setenv(var, "")
    assert environment_sets_any()
    if var.islower():  # pydantic-settings reads it too: a worker must not take the default then
        monkeypatch.setenv(var, "0")
        with pytest.raises(SuperviseError):
            load_supervise_settings()
