"""Request and response bodies of the HTTP API (they make ``/openapi.json``).

Items are JSON values a durable job could hold exactly (``weirflow.storable``: no
NaN, no integer past 64 bits, no NUL character, at most ``MAX_ITEM_DEPTH`` levels
deep), on every route, so an item that works on one works on all; a refused item
is a ``422`` naming it (``body.inputs.a.item.0``). Items that are not JSON on the
way out are rendered by ``jsonsafe.opaque`` as ``{"$repr": ..., "$type": ...}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from .. import storable
from ..errors import UnstorableError
from ..runtime.results import JobStatus
from .node_models import RegistryStatus

#: deepest nesting of an item's lists and objects (deeper ones could not be shown back)
MAX_ITEM_DEPTH = 50


def _storable(item: Any) -> Any:
    try:
        storable.check(item, "", max_depth=MAX_ITEM_DEPTH)
    except UnstorableError as e:
        message = f"at {e.path}: {e.problem}" if e.path else e.problem
        raise PydanticCustomError("unstorable", message) from None
    return item


#: an item of a request: see the module's docstring
Item = Annotated[Any, AfterValidator(_storable)]

# -- requests -------------------------------------------------------------------------


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartJob(RequestBody):
    flow: str = Field(min_length=1, description="Name of a served flow.")
    inputs: dict[str, list[Item]] = Field(
        default_factory=dict, description='Items per slot: {"routine.slot": [item, ...]}.'
    )
    keep_open: bool = Field(default=False, description="Accept more items with /input until /close.")


class SendItems(RequestBody):
    slot: str = Field(min_length=1, description='"routine.slot"')
    items: list[Item]
    timeout_s: float = Field(
        default=5.0,
        ge=0,
        allow_inf_nan=False,
        description="How long to wait for room in total, capped by the server's max_send_timeout_s.",
    )


class PauseJob(RequestBody):
    reason: str = Field(default="manual", min_length=1, max_length=200)


# -- responses -------------------------------------------------------------------------


ERROR_NAME = "The weirflow exception the same call raises in process (e.g. InputClosedError), if any."


class Error(BaseModel):
    detail: str
    error: str | None = Field(default=None, description=ERROR_NAME)


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationFailed(BaseModel):
    detail: str = Field(description="Every problem as 'field.path: message', joined by '; '.")
    errors: list[FieldError]
    error: str | None = Field(default=None, description=ERROR_NAME)


class InputRefused(BaseModel):
    detail: str
    accepted: int = Field(description="Items queued before the refusal; the rest were not.")
    slot: str | None = None
    retry_after_s: int | None = None
    capacity: int | None = Field(default=None, description="The slot's capacity (429).")
    error: str | None = Field(default=None, description=ERROR_NAME)


class FlowSummary(BaseModel):
    name: str
    routines: list[str]
    inputs: list[str] = Field(description="Every slot path.")
    outputs: list[str]


class SlotInfo(BaseModel):
    capacity: int
    overflow: str
    block_timeout_s: float | None


class ActivationInfo(BaseModel):
    kind: str
    slots: list[str]
    handler: str | None


class RoutineInfo(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class")
    slots: dict[str, SlotInfo]
    events: list[str]
    concurrency: int
    activations: list[ActivationInfo]


class FlowGraph(BaseModel):
    name: str
    routines: dict[str, RoutineInfo]
    connections: list[str]
    outputs: list[str]


class Pause(BaseModel):
    reason: str
    at: float = Field(description="Unix time the pause was requested.")


class JobInfo(BaseModel):
    id: str
    flow: str
    status: JobStatus
    error: str | None
    pause: Pause | None
    created_at: float
    input_closed: bool


class ResumedJob(JobInfo):
    warnings: list[str] = Field(description="Every slot that was full or near full on resume.")
    paused_s: float


class JobPage(BaseModel):
    items: list[JobInfo]
    total: int
    limit: int
    offset: int


class InputAccepted(BaseModel):
    accepted: int


class DeadLetterInfo(BaseModel):
    slot: str
    item: Any
    reason: str
    error: str | None
    at: float


class DeadLetterPage(BaseModel):
    items: list[DeadLetterInfo]
    total: int
    limit: int
    offset: int


class JobResultInfo(BaseModel):
    status: JobStatus
    outputs: dict[str, list[Any]]
    error: str | None
    dead_letters: list[DeadLetterInfo]


class SlotStats(BaseModel):
    """``QueueStats`` of one slot: ``enqueued == processed + size + in_flight + dead_lettered``."""

    slot: str
    size: int
    capacity: int
    usage: float
    high_water: int
    enqueued: int
    processed: int
    in_flight: int
    dead_lettered: int
    blocked_emitters: int
    blocked_s: float
    state: str = Field(description="ok, near_full, full or paused")
    overflow: str
    paused: bool


class JobQueues(BaseModel):
    slots: dict[str, SlotStats]
    full: int
    near_full: int


class FlowSlotStats(BaseModel):
    """One slot summed over a flow's unfinished jobs (``usage`` and ``high_water`` are maxima)."""

    jobs: int
    size: int
    capacity: int
    usage: float
    high_water: int
    enqueued: int
    processed: int
    in_flight: int
    dead_lettered: int
    blocked_emitters: int
    blocked_s: float
    full: int = Field(description="Jobs in which this slot is full.")
    near_full: int


class FlowQueues(BaseModel):
    flow: str
    jobs: int
    slots: dict[str, FlowSlotStats]
    full: int = Field(description="(job, slot) pairs that are full.")
    near_full: int


class Health(BaseModel):
    status: str


class FullSlots(BaseModel):
    job: str
    flow: str
    slots: list[str]


class StoreStatus(BaseModel):
    status: str = Field(description="ok or unreachable.")
    url: str = Field(description="The store's URL without its password.")
    latency_ms: float = Field(description="How long the store took to answer (or to fail).")
    error: str | None = Field(default=None, description="Why it is unreachable.")


class Readiness(BaseModel):
    status: str
    flows: int
    jobs: dict[str, int] = Field(description="Known jobs by status.")
    full_slots: list[FullSlots]
    registry: RegistryStatus | None = Field(
        default=None,
        description="The node registry status (with --registry): reported, never makes the server unready.",
    )
    store: StoreStatus | None = Field(
        default=None,
        description="Whether the durable store answers (with --store); unreachable: 503, status unready.",
    )
