"""Every exception weirflow raises, under one root.

Leaves carry the data a caller needs to act on them (``SlotFullError.slot``).
``Retry`` is the one control exception: a handler raises it to ask for another
attempt; it is not an error.
"""

from __future__ import annotations


class WeirflowError(Exception):
    """Root of every error raised by weirflow."""


class FlowError(WeirflowError):
    """A routine, flow or flow file is malformed; the message lists every problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class QueueError(WeirflowError):
    """A slot queue refused an item."""


class SlotFullError(QueueError):
    """A slot was full: at once for ``overflow="fail"``, after the timeout for ``block``."""

    def __init__(self, slot: str, capacity: int, waited_s: float | None = None) -> None:
        how = "is full" if waited_s is None else f"stayed full for {waited_s:.3g}s"
        super().__init__(f"slot {slot!r} {how} (capacity {capacity})")
        self.slot = slot
        self.capacity = capacity
        self.waited_s = waited_s


class JobError(WeirflowError):
    """A job operation is impossible in the job's state (finished, input closed, unknown slot)."""


class JobTimeoutError(JobError, TimeoutError):
    """A job (or a pause) did not finish within the time the caller allowed."""


class JobFinishedError(JobError):
    """The job already finished (completed, failed or cancelled); it takes no more items
    or commands."""


class InputClosedError(JobError):
    """``send`` after ``close_input``."""


class UnknownSlotError(JobError):
    """The flow has no slot (or routine) by that name."""


class NotPausedError(JobError):
    """``resume`` of a job that is not paused."""


class DebugError(WeirflowError):
    """A debugger operation failed (bad condition, nothing held, unknown breakpoint)."""


class StoreError(WeirflowError):
    """The durable store failed or holds something unexpected."""


class StoreRefusedError(StoreError):
    """The store refused a write for what it was asked to hold (PostgreSQL: a data or
    integrity error), not for being unreachable: the same write fails again, so a worker
    does not retry it (the job it was for fails with the reason, or is given up)."""


class StoreOpenError(StoreError):
    """The store could not be opened at all: an unknown host, a missing database or role, a
    refused password or connection. Retrying does not help until its settings or its
    server change; a store that was open and went away is a plain ``StoreError``."""


class UnstorableError(StoreError, JobError):
    """A value a durable job cannot hold exactly (``weirflow.storable``); ``path`` says where
    (``inputs["a.item"][0]``), ``problem`` why. Also a ``JobError``: the job cannot be made."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class RequestError(WeirflowError):
    """The HTTP API answered a ``wf.Client`` call with an error (``status``, ``detail`` and the
    JSON ``body``), or could not be reached (``status`` 0). Answers that stand for an
    in-process error are also that error (``wf.InputClosedError``...)."""

    def __init__(self, detail: str, status: int = 0, body: dict[str, object] | None = None) -> None:
        # not super(): in a class that is also SlotFullError (say), the next __init__ wants its data
        Exception.__init__(self, detail)
        self.status = status
        self.detail = detail
        self.body = body or {}


class ScheduleError(WeirflowError):
    """A schedule is malformed (a bad cron expression, an unknown time zone, no or two
    timings) or unknown; the message names what is wrong, ``field`` the setting at fault
    (``"cron"``, ``"tz"``, ...) when it is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LeaseLostError(StoreError):
    """A write for a job carried a stale fencing token: another claim of the job (a
    takeover after this worker's lease expired, a cancel, a release) came since, so the
    store refused it. The worker that gets it drops the job without touching it again."""

    def __init__(self, job_ids: list[str], why: str = "") -> None:
        self.job_ids = job_ids
        what = ", ".join(job_ids)
        super().__init__(f"lease lost on job {what}: {why or 'no longer held under this claim'}")


class ClusterError(WeirflowError):
    """The cluster registry or queue backend failed: Redis did not answer within the
    deadline, the registry is degraded (its circuit is open), or a script refused."""


class InvalidNodeError(ClusterError, ValueError):
    """A node's registration is malformed (empty id or pool, capacity below 1, ...)."""


class NodeGoneError(ClusterError):
    """A heartbeat or drain for a node that is not live: never registered, removed, or
    expired (its tombstone is written by then). The node registers again."""

    def __init__(self, node_id: str) -> None:
        super().__init__(f"node {node_id!r} is not registered (removed or expired): register it again")
        self.node_id = node_id


class NodeFullError(StoreError):
    """A job assigned to a node (``JobSpec.node``) was refused by the store: the node's
    queued and running jobs were at the capacity passed with it (``node_capacity``), or a
    batch's jobs for it would have gone past it. Nothing of the submit was written; a
    dispatcher picks another node (``weirflow.cluster.Dispatcher`` does)."""

    def __init__(self, node: str, capacity: int, assigned: int) -> None:
        super().__init__(
            f"node {node!r} is full: {assigned} queued or running jobs assigned, capacity {capacity}"
        )
        self.node = node
        self.capacity = capacity
        self.assigned = assigned


class WorkerDiedError(WeirflowError):
    """The child process running a call died (killed, or crashed) before it returned.

    ``index``: the call of its batch that was running then."""

    def __init__(self, message: str, index: int = 0) -> None:
        super().__init__(message)
        self.index = index

    def __reduce__(self) -> tuple[type[WorkerDiedError], tuple[str, int]]:
        return (WorkerDiedError, (str(self), self.index))


class UnpicklableError(WeirflowError):
    """An item (or state) of a process routine cannot be pickled to cross to its process."""


class RemoteError(WeirflowError):
    """A handler in a child raised an exception that cannot be pickled back; its text."""


class Retry(Exception):  # noqa: N818 - a control exception, named like arq's and dramatiq's
    """Raised by a handler to be called again after ``delay_s`` (counts against ``retries``)."""

    def __init__(self, delay_s: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay_s = delay_s
        self.reason = reason

    def __reduce__(self) -> tuple[type[Retry], tuple[float | None, str]]:
        # pickled with its own arguments (a process routine's handler may raise it)
        return (Retry, (self.delay_s, self.reason))


class SuperviseError(WeirflowError):
    """A supervisor or pipeline operation failed (``weirflow.supervise``)."""

    status = 500


class PipelineNotFound(SuperviseError):  # noqa: N818 - the contract's name (API.md)
    """No pipeline has that id (HTTP 404)."""

    status = 404

    def __init__(self, pipeline_id: str) -> None:
        super().__init__(f"no pipeline {pipeline_id!r}")
        self.pipeline_id = pipeline_id


class InvalidCommand(SuperviseError):  # noqa: N818 - the contract's name (API.md)
    """A command is malformed: unknown flow, slot or command, a bad argument, a frame past
    the size limit (HTTP 422)."""

    status = 422


class PipelineStateError(SuperviseError):
    """The command is impossible in the pipeline's state (resume of a running one, send to a
    stopped one...) (HTTP 409)."""

    status = 409

    def __init__(self, message: str, state: str = "") -> None:
        super().__init__(message)
        self.state = state


class SendWindowFullError(PipelineStateError, SlotFullError):
    """A pipeline's send window stayed full: ``unacked`` items sent to it are not
    processed yet, and at most ``capacity`` (the supervisor's ``unacked_capacity``) may
    wait (``weirflow.supervise.sends``). ``state`` is ``full``, as when the pipeline's
    slot stayed full; it is also a ``SlotFullError`` (``slot`` the item was for,
    ``capacity`` the limit that was hit), so one ``except SlotFullError`` retry loop
    serves both (HTTP 429)."""

    status = 429

    def __init__(self, slot: str, unacked: int, capacity: int, waited_s: float | None = None) -> None:
        waited = "" if waited_s is None else f" after waiting {waited_s:.3g}s"
        Exception.__init__(
            self,
            f"the pipeline's send window is full{waited}: {unacked} sent item(s) are not "
            f"processed yet (unacked_capacity {capacity})",
        )
        self.state = "full"
        self.slot = slot
        self.unacked = unacked
        self.capacity = capacity
        self.waited_s = waited_s

    def __reduce__(self) -> tuple[type[SendWindowFullError], tuple[str, int, int, float | None]]:
        return (SendWindowFullError, (self.slot, self.unacked, self.capacity, self.waited_s))


class CommandTimeout(SuperviseError, TimeoutError):  # noqa: N818 - the contract's name (API.md)
    """A child did not answer a command within its deadline (HTTP 504)."""

    status = 504


class FrameError(InvalidCommand):
    """A frame on a child's pipe is ``malformed`` (does not decode) or ``oversized`` (past
    the frame size limit); ``reason`` says which."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[FrameError], tuple[str, str]]:
        return (FrameError, (str(self), self.reason))


class ChildDiedError(SuperviseError):
    """The child process ended while a command to it was waiting for its answer."""

    status = 409


class ChildStartError(ChildDiedError):
    """A child process could not be spawned (an ``OSError`` at the spawn: too many open
    files, no memory, the interpreter missing); it counts as a failed start, as a child
    that died while starting does."""

    status = 503


class SuperviseSettingsError(SuperviseError, ValueError):
    """A supervisor setting is invalid; the message is one line naming the variable."""

    status = 422
