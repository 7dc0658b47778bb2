"""weirflow: an event-driven workflow engine that never loses an item without a record.

``import weirflow as wf`` gives the whole public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .durable.models import JobInfo
    from .engine import Engine
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
    )
    from .flow.functional import routine
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
    from .supervise import PipelineInfo, Supervisor

__version__ = "0.1.0"

#: each public name but the errors -> the module it comes from, imported when the name is
#: first asked for (``wf.Flow``, ``from weirflow import Flow``): ``import weirflow`` itself
#: loads nothing else, so a command (``weirflow worker``) decides what it loads, and how
#: (``weirflow.cli.app`` imports structlog before anything else does)
_LAZY = {
    "JobInfo": ".durable.models",
    "Engine": ".engine",
    "Backoff": ".flow",
    "Connection": ".flow",
    "ErrorPolicy": ".flow",
    "Event": ".flow",
    "Flow": ".flow",
    "FunctionRoutine": ".flow",
    "Overflow": ".flow",
    "Routine": ".flow",
    "Slot": ".flow",
    "batch": ".flow",
    "join": ".flow",
    "routine": ".flow",
    "Context": ".runtime",
    "DeadLetter": ".runtime",
    "HookPoint": ".runtime",
    "Hooks": ".runtime",
    "Job": ".runtime",
    "JobResult": ".runtime",
    "JobStats": ".runtime",
    "JobStatus": ".runtime",
    "Journal": ".runtime",
    "Journals": ".runtime",
    "PausePoint": ".runtime",
    "QueueStats": ".runtime",
    "ResumeReport": ".runtime",
    "RoutineStats": ".runtime",
    "Step": ".runtime",
    "run": ".runtime",
    "Client": ".client",
    "AsyncClient": ".client",
    "Supervisor": ".supervise",
    "PipelineInfo": ".supervise",
}


#: the sub-packages ``wf.<name>`` gives (``wf.durable.Worker``, ``wf.cluster``), imported when
#: first asked for
_SUBPACKAGES = ("cli", "client", "cluster", "debug", "durable", "flow", "runtime", "server", "supervise")


def __getattr__(name: str) -> Any:
    """The public names and the sub-packages, each imported when first asked for."""
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'weirflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
