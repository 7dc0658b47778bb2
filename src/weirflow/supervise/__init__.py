"""Supervised child processes: long-running pipelines and durable worker processes.

Building blocks (each a module of its own): ``restart`` (OTP restart decisions),
``health`` (adaptive deadlines and intervals), ``framing`` / ``channel`` /
``child`` (a child process and its pipe), ``settings`` (validated configuration);
``Supervisor`` (``supervisor``, ``pipeline``, ``pool``, ``results``, ``sends``, ``pipeline_child``)
runs pipelines with them.
"""

from __future__ import annotations

from .child import ChildProcess, ExitInfo
from .health import AdaptiveInterval, HealthState, RttEstimator
from .pipeline import PipelineInfo
from .restart import GiveUp, Restart, RestartPolicy, RestartTracker
from .sends import PipelineDeadLetter
from .settings import SuperviseSettings, load_supervise_settings
from .supervisor import Supervisor

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
