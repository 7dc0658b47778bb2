"""The supervise settings' names and defaults, readable without pydantic.

``weirflow worker`` (one process) uses one of these settings, the grace; when neither the
environment nor a flag gives any of them, it takes the defaults from here instead of
building ``SuperviseSettings``, and a worker process starts without importing pydantic and
pydantic-settings (about a sixth of its start-up CPU). ``tests/supervise/test_settings.py``
checks that these are the model's fields and defaults.
"""

from __future__ import annotations

import os

DEFAULT_HEALTH_INTERVAL_S = 1.0
DEFAULT_HEALTH_FAILURES = 3
DEFAULT_GRACE_S = 10.0
DEFAULT_WARM = 0
#: finished (stopped or failed) pipelines kept for ``get``/``pipelines`` before the oldest
#: are forgotten, as ``keep_finished_jobs`` does for jobs
DEFAULT_KEEP_FINISHED = 100
#: items sent to a pipeline that may wait to be finished (its send window)
DEFAULT_UNACKED_CAPACITY = 1000

ENV_PREFIX = "WEIRFLOW_"
#: the fields of ``SuperviseSettings``, each read from ``WEIRFLOW_<FIELD>``
FIELDS = (
    "health_interval_s",
    "health_failures",
    "grace_s",
    "warm",
    "max_rss_mb",
    "keep_finished",
    "unacked_capacity",
)


def environment_sets_any() -> bool:
    """Whether the environment has a ``WEIRFLOW_*`` variable of a supervise setting (in any
    case: pydantic-settings reads them case-insensitively), even an empty or a bad one."""
    names = {f"{ENV_PREFIX}{field}".upper() for field in FIELDS}
    return any(name.upper() in names for name in os.environ)
