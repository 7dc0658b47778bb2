"""A node as the registry caches it: an immutable record at one revision."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

import orjson

NodeState = Literal["up", "draining", "down"]
STATES: tuple[NodeState, ...] = ("up", "draining", "down")


class Node(NamedTuple):
    """One node of the cluster at ``revision`` (immutable).

    ``heartbeat_at`` is the Redis server's clock (Unix seconds) at the last
    register or heartbeat; ``ttl_s`` the time without a heartbeat after which the
    node counts as gone. ``state`` is ``down`` for a tombstone (removed or expired)
    and for a node whose heartbeat is older than ``ttl_s`` as seen locally.

    A ``NamedTuple`` rather than a frozen dataclass: a record is made for every log
    entry, and a frozen dataclass's ``__init__`` costs ten times as much.
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
        return self._replace(state="down")

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


_EMPTY: Mapping[str, str] = MappingProxyType({})


class Decoder:
    """Makes nodes from the flat fields a script wrote (the hash and the log entry share
    them), remembering parsed labels: a node's labels rarely change between entries."""

    def __init__(self, *, memo_size: int = 10_000) -> None:
        self._labels: dict[str, Mapping[str, str]] = {}
        self._memo_size = memo_size

    def labels(self, text: str) -> Mapping[str, str]:
        if not text or text == "{}":
            return _EMPTY
        labels = self._labels.get(text)
        if labels is None:
            if len(self._labels) >= self._memo_size:
                self._labels.clear()
            parsed = orjson.loads(text)
            labels = self._labels[text] = MappingProxyType({str(k): str(v) for k, v in parsed.items()})
        return labels

    def __call__(self, fields: Mapping[str, str]) -> Node:
        state = fields["state"]
        if state not in STATES:
            raise ValueError(f"unknown node state {state!r}")
        return Node(
            id=fields["id"],
            pool=fields["pool"],
            labels=self.labels(fields.get("labels", "")),
            capacity=int(fields["capacity"]),
            running=int(fields["running"]),
            address=fields.get("address", ""),
            state=state,
            revision=int(fields["revision"]),
            heartbeat_at=int(fields["heartbeat_at"]) / 1000.0,
            ttl_s=int(fields["ttl_ms"]) / 1000.0,
        )


def decode(fields: Mapping[str, str]) -> Node:
    """One node from a script's fields (no memo: for tests and one-off reads)."""
    return Decoder(memo_size=0)(fields)


def pairs(flat: list[str]) -> dict[str, str]:
    """``[k1, v1, k2, v2, ...]`` (what a script returns) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
