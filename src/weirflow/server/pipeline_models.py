"""Request and response bodies of ``/api/pipelines`` (also read by ``wf.Client``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..supervise.restart import RestartPolicy
from .models import Item, RequestBody


class StartPipeline(RequestBody):
    flow: str = Field(min_length=1, description="Name of a served flow.")
    inputs: dict[str, list[Item]] = Field(default_factory=dict, description='{"routine.slot": [item, ...]}')
    name: str | None = Field(default=None, min_length=1, max_length=200)
    restart: RestartPolicy = RestartPolicy.PERMANENT
    max_rss_mb: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class PipelineInput(RequestBody):
    slot: str = Field(min_length=1, description='"routine.slot"')
    items: list[Item]
    timeout_s: float = Field(default=5.0, ge=0, le=300, allow_inf_nan=False)


class RttMs(BaseModel):
    p50: float | None
    p99: float | None


class PipelineHealth(BaseModel):
    last_ok_at: float | None
    failures: int
    interval_s: float
    deadline_s: float
    rtt_ms: RttMs


class PipelineExit(BaseModel):
    code: int | None
    signal: str | None
    at: float
    reason: str


class PipelineOut(BaseModel):
    id: str
    name: str
    flow: str
    state: str = Field(
        description="starting, running, paused, unhealthy, restarting, stopping, stopped, failed"
    )
    pid: int | None
    restarts: int
    last_exit: PipelineExit | None
    started_at: float | None
    rss_mb: float | None
    health: PipelineHealth
    queues: dict[str, dict[str, Any]]
    restart: str
    max_rss_mb: float | None
    reason: str | None
    results: int = Field(description="Outputs waiting in the results buffer.")
    unacked: int = Field(default=0, description="Items sent that the child has not finished yet.")
    dead_letters: int = Field(default=0, description="Dead letters recorded so far.")


class PipelineResults(BaseModel):
    items: list[Any]
    remaining: int = Field(description="Outputs left in the buffer after this answer.")
    offset: int = Field(
        default=0,
        description="The position of items[0] (outputs are numbered from 0, the pipeline's "
        "first); with no items, the position of the next one. ?before=offset+n consumes "
        "exactly the first n items of a peek.",
    )


class PipelineDeadLetterOut(BaseModel):
    seq: int | None = Field(description="The send's number (None: an item the job made).")
    slot: str
    item: Any
    reason: str = Field(description="child_crashed, child_exited, pipeline_stopped, or the job's own")
    error: str | None
    at: float


class PipelineDeadLetters(BaseModel):
    items: list[PipelineDeadLetterOut]
    total: int = Field(description="Dead letters recorded since the pipeline started.")
    dropped: int = Field(description="Old ones no longer kept (each was logged).")


class Accepted(BaseModel):
    accepted: int
