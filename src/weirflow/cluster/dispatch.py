"""Durable jobs dispatched to nodes: ``Dispatcher`` (the submit side) and ``Reassigner``
(the workers' side). See docs/cluster.md, "Dispatching jobs to nodes".

``Dispatcher.submit`` picks a node from the registry's cache (``reserve``: no I/O) and
submits the job assigned to it with the node's capacity. The store writes it only if the
node's queued and running jobs stay within that capacity, checked atomically where the job
is written (optimistic, as Nomad's plan apply): the cache's view of a node's load lags by
a heartbeat, the store's count does not. A refusal (``NodeFullError``) makes the
dispatcher reserve another node; a node refused is skipped by later submits of this
dispatcher until its next heartbeat. When no node of the pool has room (or none is up,
or Redis is unreachable and every cached heartbeat went stale) the job is queued
unassigned in its queue, as Nomad queues an evaluation that found no room: the first
worker of the queue with a free slot takes it.

``Reassigner`` runs beside a worker (``weirflow worker --registry``): at every change
the registry follows, and every ``interval_s`` anyway, it gives the queued jobs of every
node the cache knows to be gone (a tombstone, or a heartbeat older than its ttl) back to
their queue's pool with
``Store.reassign``, which is atomic: however many workers reassign one node at once,
each job moves once. It keeps doing so for ``linger_s`` after it first saw the node gone,
so that a job assigned to the node by a dispatcher whose cache had not heard of its end
yet is given back too. Running jobs of a gone node are the lease expiry's: the sweeper
or the next claim requeues them (unassigned) when their leases run out.

A node the registry does not know at all (its tombstone left Redis and every cache
``tombstone_ttl_s`` after its end, say while no worker ran) is gone too: about every
``unknown_interval_s`` the reassigner asks the store which nodes jobs are assigned to
(``Store.assigned_nodes``) and reassigns those absent from its cache, live or tombstone,
for ``unknown_grace_s`` (the registry's ttl) in a row. Absence counts only while the
registry is ``normal`` (its cache then holds every record Redis has, within the log's
lag): a node registered a moment ago, and assigned jobs by a dispatcher that heard of it
first, is in the cache long before the grace is over; one that was never seen, or whose
record Redis forgot, is not coming back under that record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import structlog

from ..durable.models import JobSpec
from ..durable.store import Store
from ..errors import NodeFullError, StoreError
from .cache import Reservation
from .registry import Registry

log = structlog.get_logger("weirflow.cluster")

#: how many nodes one submit tries before it queues the job unassigned
DEFAULT_MAX_TRIES = 8

#: where a job of a batch goes: ``(pool, labels)``
Place = tuple[str, Mapping[str, str] | None]


class Dispatcher:
    """Submits durable jobs to the nodes of ``registry`` (see the module's docstring).

    ``placed``, ``refused`` and ``unassigned`` count submits assigned to a node, store
    refusals and submits queued unassigned."""

    def __init__(self, registry: Registry, *, max_tries: int = DEFAULT_MAX_TRIES, owns: bool = False) -> None:
        if max_tries < 1:
            raise ValueError("max_tries must be >= 1")
        self.registry = registry
        self.max_tries = max_tries
        self.placed = 0
        self.refused = 0
        self.unassigned = 0
        self._owns = owns
        self._full: dict[str, int] = {}  # node id -> its revision when the store refused it

    async def open(self) -> None:
        """Start the registry if this dispatcher owns it; Redis being unreachable is no
        error (the registry lists once it answers; meanwhile jobs go unassigned)."""
        if self._owns:
            await self.registry.start(require=False)

    async def close(self) -> None:
        if self._owns:
            await self.registry.close()

    def _still_full(self) -> set[str]:
        """The nodes refused since their last heartbeat (a heartbeat makes a new revision)."""
        full = set()
        for node_id, revision in list(self._full.items()):
            node = self.registry.get(node_id)
            if node is not None and node.revision == revision:
                full.add(node_id)
            else:
                del self._full[node_id]
        return full

    async def submit(
        self, store: Store, spec: JobSpec, *, pool: str, labels: Mapping[str, str] | None = None
    ) -> tuple[str, bool]:
        """Submit ``spec`` assigned to the least loaded node of ``pool`` with every one of
        ``labels`` that the store finds room on; unassigned if none has. Returns
        ``(job id, created)`` as ``Store.submit_once``."""
        skip = self._still_full() if self._full else set()
        for _ in range(self.max_tries):
            held = self.registry.reserve(pool, labels, exclude=skip)
            if held is None:
                break
            node = held.node
            placed = dataclasses.replace(spec, node=node.id, node_capacity=node.capacity)
            try:
                out = await store.submit_once(placed)
            except NodeFullError:
                self.refused += 1
                self._full[node.id] = node.revision
                skip.add(node.id)
                continue
            finally:
                held.release()  # (the store holds the assignment now, or refused it)
            self.placed += 1
            return out
        self.unassigned += 1
        return await store.submit_once(spec)

    async def submit_many(
        self, store: Store, specs: Sequence[JobSpec], places: Sequence[Place | None]
    ) -> list[tuple[str, bool]]:
        """``Store.submit_many`` of ``specs`` in one transaction, each spec ``i`` with a
        ``places[i] = (pool, labels)`` assigned to a node as ``submit`` does (``None``: as
        given). Every job takes a reservation of its own, so a batch spreads over the
        pool's nodes by load; the store checks each node's share of the batch against its
        capacity. A refusal (``NodeFullError``: nothing written) tells how many jobs the
        node still has room for: the batch is placed again with at most that many on it
        (none: the node is skipped, as by ``submit``). Jobs that find no node with room are
        queued unassigned. Returns ``(id, created)`` in order."""
        if len(specs) != len(places):
            raise ValueError("submit_many needs one place (or None) per spec")
        skip = self._still_full() if self._full else set()
        room: dict[str, int] = {}  # node id -> jobs the store said it has room for
        for _ in range(self.max_tries):
            held: list[Reservation] = []
            placed: list[JobSpec] = []
            share: Counter[str] = Counter()
            exclude = set(skip)
            try:
                for spec, place in zip(specs, places, strict=True):
                    r = None if place is None else self.registry.reserve(place[0], place[1], exclude=exclude)
                    if r is None:
                        placed.append(spec)
                        continue
                    node = r.node
                    held.append(r)
                    placed.append(dataclasses.replace(spec, node=node.id, node_capacity=node.capacity))
                    share[node.id] += 1
                    if share[node.id] >= room.get(node.id, node.capacity):
                        exclude.add(node.id)
                try:
                    out = await store.submit_many(placed)
                except NodeFullError as e:
                    if e.node not in share:
                        raise  # (a spec that came assigned to a node: the caller's, not ours)
                    self.refused += 1
                    room[e.node] = max(0, e.capacity - e.assigned)
                    if room[e.node] == 0:
                        known = self.registry.get(e.node)
                        if known is not None:
                            self._full[e.node] = known.revision
                        skip.add(e.node)
                    continue
            finally:
                for r in held:
                    r.release()  # (the store holds the assignments now, or refused them)
            self.placed += len(held)
            self.unassigned += sum(place is not None for place in places) - len(held)
            return out
        self.unassigned += sum(place is not None for place in places)
        return await store.submit_many(specs)


class Reassigner:
    """Gives the queued jobs of gone nodes back to the pool (see the module's docstring).
    ``node_id`` (this worker's own node) is never reassigned by it."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        *,
        node_id: str | None = None,
        interval_s: float | None = None,
        linger_s: float | None = None,
        unknown_interval_s: float | None = None,
        unknown_grace_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.store = store
        self.node_id = node_id
        self.interval_s = interval_s if interval_s is not None else min(registry.ttl_s / 3, 1.0)
        self.linger_s = linger_s if linger_s is not None else max(10.0, registry.ttl_s)
        self.unknown_interval_s = unknown_interval_s if unknown_interval_s is not None else registry.ttl_s
        self.unknown_grace_s = unknown_grace_s if unknown_grace_s is not None else registry.ttl_s
        self.clock = clock
        self.reassigned = 0  # jobs this reassigner gave back
        self._seen: dict[tuple[str, int], float] = {}  # (node, revision) -> first seen gone (clock)
        self._unknown: dict[str, float] = {}  # node -> since when it is unknown to a normal registry
        self._next_unknown_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[str]:
        """One pass: reassign each gone node seen gone for less than ``linger_s``, and
        (every ``unknown_interval_s``) each node the registry has not known for
        ``unknown_grace_s``."""
        moved = await self._gone_once()
        now = self.clock()
        if self._next_unknown_at is None or now >= self._next_unknown_at:
            self._next_unknown_at = now + self.unknown_interval_s
            moved += await self._unknown_once(now)
        return moved

    async def _unknown_once(self, now: float) -> list[str]:
        if self.registry.status != "normal":
            self._unknown.clear()  # (absence counts only while the cache is complete)
            return []
        records = self.registry.cache.records
        unknown = {n for n in await self.store.assigned_nodes() if n not in records and n != self.node_id}
        if self.registry.status != "normal":  # (it may have changed while the store answered)
            self._unknown.clear()
            return []
        for node_id in [n for n in self._unknown if n not in unknown]:
            del self._unknown[node_id]
        moved: list[str] = []
        for node_id in sorted(unknown):
            if now - self._unknown.setdefault(node_id, now) < self.unknown_grace_s:
                continue
            ids = await self.store.reassign(node_id)
            if ids:
                log.info("cluster node unknown to the registry: jobs reassigned", node=node_id, jobs=len(ids))
            moved += ids
        self.reassigned += len(moved)
        return moved

    async def _gone_once(self) -> list[str]:
        now = self.clock()
        current: set[tuple[str, int]] = set()
        moved: list[str] = []
        for node in self.registry.gone():
            if node.id == self.node_id:
                continue
            key = (node.id, node.revision)
            current.add(key)
            if now - self._seen.setdefault(key, now) > self.linger_s:
                continue
            ids = await self.store.reassign(node.id)
            if ids:
                log.info("cluster node gone: jobs reassigned", node=node.id, jobs=len(ids))
            moved += ids
        for key in [k for k in self._seen if k not in current]:
            del self._seen[key]
        self.reassigned += len(moved)
        return moved

    async def _run(self) -> None:
        reg = self.registry
        while True:
            seen = reg.revision
            try:
                await self.run_once()
            except StoreError as e:
                log.warning("cluster reassign failed", error=str(e))
            # woken by the next change (a tombstone arriving), or after interval_s anyway: a
            # heartbeat going stale is no change, only time passing
            with contextlib.suppress(TimeoutError):
                await reg.wait_for(functools.partial(_moved_on, reg, seen), timeout_s=self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="weirflow-cluster-reassign")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _moved_on(registry: Registry, revision: int) -> bool:
    return registry.revision != revision
