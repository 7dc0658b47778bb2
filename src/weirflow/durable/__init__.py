"""Durable jobs: a store (memory, SQLite, PostgreSQL), a job queue, workers, leases,
a sweeper, retention, alerts and step records.

``wf.Engine(store=URL)`` submits jobs; ``Worker`` (or ``weirflow worker``) runs them.
"""

from __future__ import annotations

from .memory import MemoryStore
from .models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    STATUSES,
    Claim,
    EventRecord,
    JobInfo,
    JobRecord,
    JobSpec,
    Rate,
    Retention,
    StepRecord,
    SweepReport,
)
from .store import Store, open_store

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "Claim",
    "EventRecord",
    "JobInfo",
    "JobRecord",
    "JobSpec",
    "MemoryStore",
    "Rate",
    "Retention",
    "StepRecord",
    "Store",
    "SweepReport",
    "open_store",
]
