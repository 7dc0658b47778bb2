"""Every Redis key the node registry uses, under one prefix (like arq's ``constants.py``).

The Lua scripts build node keys from the prefix themselves (the sweep and the list
touch keys they only learn inside the script), so the registry is meant for a single
Redis (or one hash slot), not Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "weirflow:cluster:"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    @property
    def revision(self) -> str:
        """The global revision: a counter bumped by every write, never expiring."""
        return self.prefix + "rev"

    @property
    def log(self) -> str:
        """The change log: a Stream whose entry ids are the revisions (``<rev>-0``)."""
        return self.prefix + "log"

    @property
    def expiry(self) -> str:
        """A sorted set of live node ids scored by their expiry (Redis time, ms)."""
        return self.prefix + "expiry"

    @property
    def ids(self) -> str:
        """The set of ids that have a record (live or tombstone)."""
        return self.prefix + "ids"

    @property
    def epoch(self) -> str:
        """The identity of the data set (a new one after Redis lost its data)."""
        return self.prefix + "epoch"

    @property
    def node_prefix(self) -> str:
        return self.prefix + "node:"

    def node(self, node_id: str) -> str:
        return self.node_prefix + node_id
