"""Request and response bodies of the durable job routes (``routes/store.py``).

The shapes are the CLI's: a job is ``weirflow jobs show --json`` (``JobInfo.to_dict()``),
a list item ``weirflow jobs list --json`` (``JobRecord.to_dict()``), a step
``StepRecord.to_dict()``. Bounds on numbers keep every accepted value storable on
every backend (PostgreSQL ``integer`` columns, finite delays).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from ..durable.models import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, DEFAULT_QUEUE
from ..durable.schedules import DEFAULT_MISFIRE_GRACE_S, MIN_EVERY_S
from .models import Item, RequestBody

StoreStatus = Literal["queued", "running", "completed", "failed", "cancelled"]

MAX_NAME = 200
MAX_ATTEMPTS = 100
MAX_DELAY_S = 366 * 24 * 3600.0
INT4 = 2**31 - 1

#: a name the store keeps as text: 1-200 characters, no NUL (PostgreSQL text cannot hold it)
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=r"^[^\x00]*$")]
Seconds = Annotated[float, Field(ge=0, le=MAX_DELAY_S, allow_inf_nan=False)]
#: a node label's value (``weirflow worker --labels k=v``)
LabelValue = Annotated[str, Field(max_length=MAX_NAME, pattern=r"^[^\x00]*$")]
MAX_LABELS = 64

# -- requests -------------------------------------------------------------------------


class BackoffBody(RequestBody):
    """Delay before retry n: ``initial_s * factor**(n-1)``, capped at ``max_s``."""

    initial_s: Seconds = DEFAULT_BACKOFF.initial_s
    factor: float = Field(default=DEFAULT_BACKOFF.factor, ge=1, le=100, allow_inf_nan=False)
    max_s: Seconds = DEFAULT_BACKOFF.max_s
    jitter: bool = Field(default=DEFAULT_BACKOFF.jitter, description="Draw each delay from [d/2, d].")


class SubmitStoreJob(RequestBody):
    flow: Name = Field(description="Name of a flow this server serves.")
    inputs: dict[str, list[Item]] = Field(
        default_factory=dict, description='JSON items per slot: {"routine.slot": [item, ...]}.'
    )
    queue: Name = DEFAULT_QUEUE
    attempts: int = Field(default=DEFAULT_ATTEMPTS, ge=1, le=MAX_ATTEMPTS, description="Runs before failed.")
    backoff: BackoffBody | None = Field(default=None, description="Between attempts (default 1s x2, ≤60s).")
    delay_s: Seconds = Field(default=0.0, description="Start no earlier than this from now.")
    priority: int = Field(default=0, ge=-INT4, le=INT4, description="Higher runs first.")
    idempotency_key: Name | None = Field(
        default=None, description="A second submit with it (same queue) returns the first job."
    )
    timeout_s: float | None = Field(
        default=None, gt=0, le=MAX_DELAY_S, allow_inf_nan=False, description="Per attempt."
    )
    pool: Name | None = Field(
        default=None,
        description="Assign the job to the least loaded node of this pool with room (a server "
        "started with --registry; docs/cluster.md); the queue is then the pool's name unless given.",
    )
    labels: Annotated[dict[Name, LabelValue], Field(max_length=MAX_LABELS)] | None = Field(
        default=None, description="With pool: only nodes carrying every one of these labels."
    )


#: most jobs one ``POST /api/store/jobs/batch`` may submit (more: ``422``; a body over
#: ``WEIRFLOW_MAX_BODY_BYTES``: ``413``)
MAX_BATCH = 1000


def _at_most_a_batch(jobs: list[Any]) -> list[Any]:
    # checked here rather than as the schema's maxItems, so that clients (and schema-driven
    # test generators) are not led to build 1001-job bodies
    if len(jobs) > MAX_BATCH:
        raise PydanticCustomError("too_long", f"at most {MAX_BATCH} jobs in one batch (got {len(jobs)})")
    return jobs


class SubmitStoreJobs(RequestBody):
    jobs: Annotated[list[SubmitStoreJob], AfterValidator(_at_most_a_batch)] = Field(
        min_length=1,
        description=f"1 to {MAX_BATCH} jobs, each as for POST /api/store/jobs; all are queued, or none.",
    )


class RetryStoreJob(RequestBody):
    from_start: bool = Field(default=False, description="Run every step again (default: from the last).")


class AddSchedule(RequestBody):
    name: Name = Field(description="Adding a name again replaces that schedule.")
    flow: Name = Field(description="Name of a flow this server serves.")
    inputs: dict[str, list[Item]] = Field(default_factory=dict, description="Each tick's job's inputs.")
    cron: str | None = Field(default=None, max_length=MAX_NAME, description='e.g. "*/5 * * * *".')
    every_s: float | None = Field(default=None, ge=MIN_EVERY_S, le=MAX_DELAY_S, allow_inf_nan=False)
    tz: str = Field(default="UTC", min_length=1, max_length=MAX_NAME, description="Time zone of cron.")
    queue: Name = DEFAULT_QUEUE
    catchup: Literal["once", "skip"] = Field(
        default="once", description="Missed ticks: run the latest once, or skip it past the grace."
    )
    misfire_grace_s: float = Field(default=DEFAULT_MISFIRE_GRACE_S, ge=0, le=MAX_DELAY_S, allow_inf_nan=False)
    attempts: int = Field(default=DEFAULT_ATTEMPTS, ge=1, le=MAX_ATTEMPTS)
    backoff: BackoffBody | None = None
    priority: int = Field(default=0, ge=-INT4, le=INT4)
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_DELAY_S, allow_inf_nan=False)


# -- responses -------------------------------------------------------------------------


class StoreStep(BaseModel):
    """One handler call of a job: ``weirflow jobs steps --json``."""

    routine: str
    seq: int
    status: str = Field(description="running, completed or failed")
    attempt: int
    progress: float = Field(description="0-100, from ctx.progress")
    message: str
    started_at: float | None
    completed_at: float | None
    error: str | None
    worker: str | None
    traceback: str | None = Field(default=None, description="A failed attempt's Python traceback.")


class StoreDeadLetter(BaseModel):
    """An item the job dead-lettered, and why (``DeadLetter``)."""

    slot: str
    item: Any
    reason: str
    error: str | None
    at: float


class StoreJob(BaseModel):
    """A durable job with its steps, outputs and dead letters: ``weirflow jobs show --json``."""

    id: str
    flow: str
    status: StoreStatus
    attempt: int
    error: str | None
    error_detail: str | None = Field(default=None, description="The traceback of the failure.")
    steps: list[StoreStep]
    outputs: dict[str, Any] = Field(default_factory=dict, description="A completed job's outputs.")
    dead_letters: list[StoreDeadLetter] = Field(default_factory=list)
    node: str | None = Field(
        default=None, description="The cluster node the job is assigned to or runs on (null: unassigned)."
    )


class StoreBackoff(BaseModel):
    initial_s: float
    factor: float
    max_s: float
    jitter: bool


class StoreJobRecord(BaseModel):
    """A job as the store holds it: ``weirflow jobs list --json``. Times are Unix seconds."""

    id: str
    flow: str
    inputs: dict[str, Any]
    queue: str
    status: StoreStatus
    attempt: int = Field(description="Attempts that can fail so far (a stalled run gives its back).")
    runs: int = Field(description="Every claim by a worker.")
    max_attempts: int
    backoff: StoreBackoff
    priority: int
    run_at: float
    idempotency_key: str | None
    timeout_s: float | None
    worker_id: str | None
    lease_expires_at: float | None
    stalls: int
    error: str | None
    outputs: dict[str, Any] | None
    from_start: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    node: str | None = Field(
        default=None, description="The cluster node the job is assigned to or runs on (null: unassigned)."
    )


class StoreJobPage(BaseModel):
    items: list[StoreJobRecord] = Field(description="Newest first.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page; null on the last.")


class StoreJobIds(BaseModel):
    """What a batch submit did, in the order of the request."""

    ids: list[str] = Field(description="The job of each request item.")
    created: list[bool] = Field(
        description="False: an earlier job held the idempotency key; its id is given."
    )


class StoreEvent(BaseModel):
    """A job state change (queued, claimed, retrying, failed, completed, ...) or an alert."""

    id: int
    job_id: str | None
    queue: str
    kind: str
    at: float
    data: dict[str, Any]


class StoreSchedule(BaseModel):
    """A schedule as ``weirflow schedules list --json`` prints it. Times are Unix seconds."""

    name: str
    flow: str
    inputs: dict[str, Any]
    queue: str
    cron: str | None
    every_s: float | None
    tz: str
    catchup: str
    misfire_grace_s: float
    attempts: int
    backoff: StoreBackoff
    priority: int
    timeout_s: float | None
    next_at: float = Field(description="Its next tick.")
    last_at: float | None = Field(description="The last tick that made a job.")
    last_job_id: str | None
    created_at: float


class PausedQueues(BaseModel):
    """``GET /api/store/queues``."""

    paused: list[str] = Field(description="The paused queues, by name: their jobs are not claimed.")


class QueueState(BaseModel):
    """A queue after ``POST /api/store/queues/{queue}/pause`` or ``.../resume``."""

    queue: str
    paused: bool
    changed: bool = Field(description="False when the queue was in that state already.")
