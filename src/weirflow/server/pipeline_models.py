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


class PipelineResults(BaseModel):
    items: list[Any]
    remaining: int


class Accepted(BaseModel):
    accepted: int
