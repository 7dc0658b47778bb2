"""Supervisor settings: ``WEIRFLOW_*`` environment variables and flags, validated at start.

``load_supervise_settings(health_interval_s=..., ...)`` reads the environment
(``WEIRFLOW_HEALTH_INTERVAL_S``, ``WEIRFLOW_HEALTH_FAILURES``, ``WEIRFLOW_GRACE_S``,
``WEIRFLOW_WARM``, ``WEIRFLOW_MAX_RSS_MB``, ``WEIRFLOW_KEEP_FINISHED``,
``WEIRFLOW_UNACKED_CAPACITY``), lets the given values (flags) override it, and raises
``SuperviseSettingsError`` (a ``SuperviseError`` and a ``ValueError``) with one line
naming the variable (or the flag) when a value is bad; the CLI prints that line and
exits 2.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import SuperviseSettingsError
from .defaults import (
    DEFAULT_GRACE_S,
    DEFAULT_HEALTH_FAILURES,
    DEFAULT_HEALTH_INTERVAL_S,
    DEFAULT_KEEP_FINISHED,
    DEFAULT_UNACKED_CAPACITY,
    DEFAULT_WARM,
    ENV_PREFIX,
)


class SuperviseSettings(BaseSettings):
    """How a supervisor checks, replaces and stops its children (env prefix ``WEIRFLOW_``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    health_interval_s: float = Field(default=DEFAULT_HEALTH_INTERVAL_S, gt=0, le=3600, allow_inf_nan=False)
    """The longest wait between two health checks of a child (shorter while it fails)."""
    health_failures: int = Field(default=DEFAULT_HEALTH_FAILURES, ge=1, le=1000)
    """Consecutive failed health checks that replace a child."""
    grace_s: float = Field(default=DEFAULT_GRACE_S, ge=0, le=3600, allow_inf_nan=False)
    """How long a stopping child may take after SIGTERM before SIGKILL."""
    warm: int = Field(default=DEFAULT_WARM, ge=0, le=1000)
    """Spare child processes kept ready, flows imported."""
    max_rss_mb: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """A child whose resident memory goes past this is replaced (none: no limit)."""
    keep_finished: int = Field(default=DEFAULT_KEEP_FINISHED, ge=0, le=1_000_000)
    """Finished (stopped or failed) pipelines kept; when one more starts, the oldest go."""
    unacked_capacity: int = Field(default=DEFAULT_UNACKED_CAPACITY, ge=1, le=10_000_000)
    """Items sent to a pipeline that may wait to be finished (its send window); past it a
    send waits, then ``SendWindowFullError`` (HTTP 429)."""


def load_supervise_settings(*, from_flags: bool = False, **overrides: Any) -> SuperviseSettings:
    """Settings from the environment with ``overrides`` (``None`` values ignored); a bad
    value's line names the variable, or with ``from_flags`` (the CLI, whose flags are the
    overrides: ``--grace-s``) the flag for a value given as one."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return SuperviseSettings(**given)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            loc = err["loc"]
            name = setting_name(str(loc[0]), given=given, from_flags=from_flags) if loc else "settings"
            problems.append(f"{name}: {msg}")
        raise SuperviseSettingsError("; ".join(problems)) from None


def setting_name(field: str, *, given: Collection[str], from_flags: bool) -> str:
    """``--field-name`` for a value given as a flag (``from_flags``), else ``WEIRFLOW_FIELD_NAME``."""
    if from_flags and field in given:
        return "--" + field.replace("_", "-")
    return f"WEIRFLOW_{field.upper()}"
