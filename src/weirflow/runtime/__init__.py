"""Execution layer: engine, jobs, slot queues, runners, hooks and journal."""

from __future__ import annotations

from .context import Context
from .engine import Engine
from .hooks import HookPoint, Hooks
from .job import Job
from .journal import INPUT, Journal, Journals, Step
from .replay import LogJournal, Restore, restore_from
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
    "INPUT",
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
    "Journals",
    "LogJournal",
    "PausePoint",
    "QueueStats",
    "Restore",
    "ResumeReport",
    "RoutineStats",
    "Step",
    "restore_from",
    "run",
]
