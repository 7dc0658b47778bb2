"""Execution layer: engine, jobs, slot queues, runners, hooks and journal."""

from __future__ import annotations

from .context import Context
from .engine import Engine
from .hooks import HookPoint, Hooks
from .job import Job
from .journal import Journal, Step
from .results import (
    DeadLetter,
    JobResult,
    JobStats,
    JobStatus,
    PausePoint,
    QueueStats,
    ResumeReport,
    RoutineStats,
)
from .sync import run

__all__ = [
    "Context",
    "DeadLetter",
    "Engine",
    "HookPoint",
    "Hooks",
    "Job",
    "JobResult",
    "JobStats",
    "JobStatus",
    "Journal",
    "PausePoint",
    "QueueStats",
    "ResumeReport",
    "RoutineStats",
    "Step",
    "run",
]
