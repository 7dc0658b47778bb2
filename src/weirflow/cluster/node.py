"""A node as the registry caches it: an immutable record at one revision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

import orjson

NodeState = Literal["up", "draining", "down"]
STATES: tuple[NodeState, ...] = ("up", "draining", "down")


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the cluster at ``revision``.

    ``heartbeat_at`` is the Redis server's clock (Unix seconds) at the last
    register or heartbeat; ``ttl_s`` the time without a heartbeat after which the
    node counts as gone. ``state`` is ``down`` for a tombstone (removed or expired)
    and for a node whose heartbeat is older than ``ttl_s`` as seen locally.
    """

    id: str
    pool: str
    labels: Mapping[str, str]
    capacity: int
    running: int
    address: str
    state: NodeState
    revision: int
    heartbeat_at: float
    ttl_s: float

    @property
    def expires_at(self) -> float:
        return self.heartbeat_at + self.ttl_s

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if not labels:
            return True
        own = self.labels
        return all(own.get(k) == v for k, v in labels.items())

    def seen_down(self) -> Node:
        return replace(self, state="down")

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "pool": self.pool,
            "labels": dict(self.labels),
            "capacity": self.capacity,
            "running": self.running,
            "address": self.address,
            "state": self.state,
            "revision": self.revision,
            "heartbeat_at": self.heartbeat_at,
            "ttl_s": self.ttl_s,
        }


def decode(fields: Mapping[str, str]) -> Node:
    """A node from the flat fields a script wrote (the hash and the log entry share them)."""
    state = fields["state"]
    if state not in STATES:
        raise ValueError(f"unknown node state {state!r}")
    labels = orjson.loads(fields["labels"]) if fields.get("labels") else {}
    return Node(
        id=fields["id"],
        pool=fields["pool"],
        labels=MappingProxyType({str(k): str(v) for k, v in labels.items()}),
        capacity=int(fields["capacity"]),
        running=int(fields["running"]),
        address=fields.get("address", ""),
        state=state,
        revision=int(fields["revision"]),
        heartbeat_at=int(fields["heartbeat_at"]) / 1000.0,
        ttl_s=int(fields["ttl_ms"]) / 1000.0,
    )


def pairs(flat: list[str]) -> dict[str, str]:
    """``[k1, v1, k2, v2, ...]`` (what a script returns) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
