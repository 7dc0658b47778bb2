"""weirflow: an event-driven workflow engine that never loses an item without a record.

``import weirflow as wf`` gives the whole public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .durable.models import JobInfo
from .engine import Engine
from .errors import (
    ClusterError,
    CommandTimeout,
    DebugError,
    FlowError,
    InputClosedError,
    InvalidCommand,
    JobError,
    JobFinishedError,
    JobTimeoutError,
    LeaseLostError,
    NodeFullError,
    NotPausedError,
    PipelineNotFound,
    PipelineStateError,
    QueueError,
    RequestError,
    Retry,
    ScheduleError,
    SendWindowFullError,
    SlotFullError,
    StoreError,
    StoreOpenError,
    StoreRefusedError,
    SuperviseError,
    UnknownSlotError,
    UnpicklableError,
    UnstorableError,
    WeirflowError,
    WorkerDiedError,
)
from .flow import (
    Backoff,
    Connection,
    ErrorPolicy,
    Event,
    Flow,
    FunctionRoutine,
    Overflow,
    Routine,
    Slot,
    batch,
    join,
    routine,
)
from .runtime import (
    Context,
    DeadLetter,
    HookPoint,
    Hooks,
    Job,
    JobResult,
    JobStats,
    JobStatus,
    Journal,
    Journals,
    PausePoint,
    QueueStats,
    ResumeReport,
    RoutineStats,
    Step,
    run,
)

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .supervise import PipelineInfo, Supervisor

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``wf.Client`` and ``wf.AsyncClient`` import the HTTP client (and the server's models),
    ``wf.cluster`` the node registry (and redis-py), only when asked for, so ``import
    weirflow`` stays light."""
    if name == "cluster":
        import importlib

        return importlib.import_module(".cluster", __name__)
    if name in ("Client", "AsyncClient", "client"):
        import importlib

        module = importlib.import_module(".client", __name__)
        return module if name == "client" else getattr(module, name)
    if name in ("Supervisor", "PipelineInfo"):  # child processes: imported when asked for
        from . import supervise

        return getattr(supervise, name)
    raise AttributeError(f"module 'weirflow' has no attribute {name!r}")


__all__ = [
    "AsyncClient",
    "Backoff",
    "Client",
    "ClusterError",
    "CommandTimeout",
    "Connection",
    "Context",
    "DeadLetter",
    "DebugError",
    "Engine",
    "ErrorPolicy",
    "Event",
    "Flow",
    "FlowError",
    "FunctionRoutine",
    "HookPoint",
    "Hooks",
    "InputClosedError",
    "InvalidCommand",
    "Job",
    "JobError",
    "JobFinishedError",
    "JobInfo",
    "JobResult",
    "JobStats",
    "JobStatus",
    "JobTimeoutError",
    "Journal",
    "Journals",
    "LeaseLostError",
    "NodeFullError",
    "NotPausedError",
    "Overflow",
    "PausePoint",
    "PipelineInfo",
    "PipelineNotFound",
    "PipelineStateError",
    "QueueError",
    "QueueStats",
    "RequestError",
    "ResumeReport",
    "Retry",
    "Routine",
    "RoutineStats",
    "ScheduleError",
    "SendWindowFullError",
    "Slot",
    "SlotFullError",
    "Step",
    "StoreError",
    "StoreOpenError",
    "StoreRefusedError",
    "SuperviseError",
    "Supervisor",
    "UnknownSlotError",
    "UnpicklableError",
    "UnstorableError",
    "WeirflowError",
    "WorkerDiedError",
    "__version__",
    "batch",
    "join",
    "routine",
    "run",
]
