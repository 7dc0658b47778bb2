"""Answers of ``GET /api/nodes`` and the registry part of ``/readyz``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class NodeModel(BaseModel):
    id: str
    pool: str
    labels: dict[str, str]
    capacity: int
    running: int
    address: str
    state: Literal["up", "draining", "down"] = Field(
        description="down: its heartbeat is older than its ttl_s (seen by this server's clock)"
    )
    revision: int
    heartbeat_at: float = Field(description="Unix seconds, by the Redis server's clock")
    ttl_s: float


class RegistryStatus(BaseModel):
    url: str = Field(description="The registry's Redis URL, without its password")
    status: Literal["normal", "degraded", "recovering", "starting"]
    revision: int
    staleness_s: float = Field(description="Seconds since the cache was last known to hold every change")
    nodes: int


class NodeList(BaseModel):
    registry: RegistryStatus
    nodes: list[NodeModel]
