"""Request and response bodies of the debugger routes (``routes/debug.py``).

Items, routine state and evaluated values are any JSON value; what is not JSON
is rendered by ``jsonsafe.opaque`` like everywhere else in the API.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..debug.conditions import MAX_SOURCE_CHARS
from ..runtime.results import JobStatus
from .models import RequestBody, SlotStats, ValidationFailed

#: longest CEL text accepted (the debugger's own limit: the CEL binding recurses once
#: per nesting level and a deep enough expression overflows the native stack)
MAX_EXPR_CHARS = MAX_SOURCE_CHARS
MAX_BATCH = 1000

Kind = Literal["routine", "slot", "event", "connection"]
#: where a job stopped: a breakpoint's kind, or where a step could not go on
StopKind = Literal["routine", "slot", "event", "connection", "blocked", "idle"]
Scope = Literal["job", "routine"]

_CONDITION = (
    "CEL over `item`, `routine`, `slot`, `event`, `attempt`, `queue` (size, capacity, usage) "
    "and `state`; must give true or false."
)

# -- requests -------------------------------------------------------------------------


class NewBreakpoint(RequestBody):
    kind: Kind = Field(
        description="Where it stops: before a handler call, at a slot, an event or a connection."
    )
    target: str = Field(
        min_length=1,
        max_length=1000,
        description='"r" (routine), "r.slot" (slot), "r.event" (event) or "r.event -> s.slot" (connection).',
    )
    condition: str | None = Field(
        default=None, max_length=MAX_EXPR_CHARS, description=f"{_CONDITION} Null or empty: always."
    )
    once: bool = Field(default=False, description="Remove the breakpoint after its first hit.")
    scope: Scope = Field(
        default="job", description="job: the whole job pauses; routine: only that routine stops."
    )
    enabled: bool = True


class BreakpointBatch(RequestBody):
    breakpoints: list[Any] = Field(
        max_length=MAX_BATCH,
        description="Each like the body of POST /breakpoints; each is checked on its own.",
    )


class BreakpointIds(RequestBody):
    ids: list[str] = Field(max_length=MAX_BATCH, description="Breakpoint ids to remove.")


class BreakpointChange(RequestBody):
    enabled: bool | None = None
    condition: str | None = Field(
        default=None,
        max_length=MAX_EXPR_CHARS,
        description=f'{_CONDITION} "" removes the condition; null or absent leaves it.',
    )
    once: bool | None = None


class Expression(RequestBody):
    expr: str = Field(
        min_length=1,
        max_length=MAX_EXPR_CHARS,
        description="CEL, evaluated at the current location (the same variables as a condition).",
    )


class NewItem(RequestBody):
    item: Any = Field(description="Replaces the held item (a batch or join call: a list of as many).")


class DropItem(RequestBody):
    reason: str = Field(
        min_length=1, max_length=200, description="The dead letter's reason is `debugger:<reason>`."
    )


class StateChange(RequestBody):
    key: str = Field(min_length=1, max_length=200)
    value: Any
    routine: str | None = Field(default=None, description="Default: the routine of the held item.")


# -- responses -------------------------------------------------------------------------


class BreakpointInfo(BaseModel):
    id: str
    kind: Kind
    target: str
    condition: str | None
    enabled: bool
    once: bool
    scope: Scope
    hit_count: int
    status: str = Field(description="ok, or error: its condition failed at run time (and the hit paused).")
    error: str | None


class BatchFailure(BaseModel):
    index: int = Field(description="Position in the request's list.")
    error: str
    line: int | None = Field(default=None, description="Where a condition failed to compile.")
    column: int | None = None


class BatchCreated(BaseModel):
    created: list[BreakpointInfo]
    failed: list[BatchFailure]


class BatchRemoved(BaseModel):
    removed: list[str]
    failed: list[BatchFailure]


class Location(BaseModel):
    breakpoint: str | None = Field(description="The breakpoint that hit; null after a step.")
    kind: StopKind = Field(
        description="A breakpoint's kind; after a step that could not go on, blocked (target: the "
        "full slot whose room never comes) or idle (target: the stepped routine, which has nothing "
        "to do); these hold no item."
    )
    target: str
    routine: str | None = Field(description="The emitting routine (event, connection) or receiving one.")
    slot: str | None
    event: str | None
    attempt: int
    item: Any
    reason: str | None = Field(default=None, description="Why a step stopped where it could not go on.")


class DebugView(BaseModel):
    status: JobStatus
    paused: bool = Field(description="The job is paused, or an item is held (a routine-scope hit).")
    pause_reason: str | None
    location: Location | None = Field(description="The oldest held item, or null.")
    held: int = Field(description="Items held now.")
    state: dict[str, Any] | None = Field(description="ctx.state of the held item's routine.")
    queues: dict[str, SlotStats]
    queued_items: dict[str, list[Any]] = Field(description="The first `limit` items waiting per slot.")
    breakpoints: list[BreakpointInfo]


class RoutineState(BaseModel):
    routine: str
    state: dict[str, Any]


class Evaluated(BaseModel):
    value: Any


class BadCondition(ValidationFailed):
    line: int | None = Field(default=None, description="Where the CEL text failed to compile.")
    column: int | None = None
