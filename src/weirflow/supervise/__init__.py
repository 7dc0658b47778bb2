"""Supervised child processes: long-running pipelines and durable worker processes.

Building blocks (each a module of its own): ``restart`` (OTP restart decisions),
``health`` (adaptive deadlines and intervals), ``framing`` / ``channel`` /
``child`` (a child process and its pipe), ``settings`` (validated configuration);
``Supervisor`` (``supervisor``, ``pipeline``, ``pool``, ``results``, ``sends``, ``pipeline_child``)
runs pipelines with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .child import ChildProcess, ExitInfo
    from .health import AdaptiveInterval, HealthState, RttEstimator
    from .pipeline import PipelineInfo
    from .restart import GiveUp, Restart, RestartPolicy, RestartTracker
    from .sends import PipelineDeadLetter
    from .settings import SuperviseSettings, load_supervise_settings
    from .supervisor import Supervisor

#: each name of ``__all__`` -> its module, imported when the name is first asked for: a
#: worker process imports ``weirflow.supervise.worker_child`` (or ``.workers``) without the
#: pipeline supervisor, pydantic-settings and psutil it does not use
_EXPORTS = {
    "ChildProcess": "child",
    "ExitInfo": "child",
    "AdaptiveInterval": "health",
    "HealthState": "health",
    "RttEstimator": "health",
    "PipelineInfo": "pipeline",
    "GiveUp": "restart",
    "Restart": "restart",
    "RestartPolicy": "restart",
    "RestartTracker": "restart",
    "PipelineDeadLetter": "sends",
    "SuperviseSettings": "settings",
    "load_supervise_settings": "settings",
    "Supervisor": "supervisor",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AdaptiveInterval",
    "ChildProcess",
    "ExitInfo",
    "GiveUp",
    "HealthState",
    "PipelineDeadLetter",
    "PipelineInfo",
    "Restart",
    "RestartPolicy",
    "RestartTracker",
    "RttEstimator",
    "SuperviseSettings",
    "Supervisor",
    "load_supervise_settings",
]
