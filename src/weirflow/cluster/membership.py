"""``Membership``: one process registered as a node, heartbeating its running count.

``weirflow worker --registry URL`` makes one around its durable worker and passes
``running=lambda: len(worker.running)``: the worker itself does not know about the
cluster. A heartbeat goes out every ``interval_s`` (a third of the ttl, at most 1 s,
with jitter); a node found gone (it expired while Redis or this process was stalled)
registers again; a heartbeat that fails (Redis unreachable, the registry degraded) is
logged and the next tick tries again, so an outage never stops the worker.

At start, the registry's first list and the register are tried again with a backoff for
up to ``start_timeout_s`` (5 s) while Redis answers late (calls miss their deadline: a
loaded machine, a list of many nodes), so a moment of slowness does not end a worker
that is starting; a Redis that refuses connections, or stays slow, ends it with
``ClusterError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Mapping

import structlog

from ..errors import ClusterError, NodeGoneError
from .node import Node
from .registry import Registry

log = structlog.get_logger("weirflow.cluster")

#: how long a start tries to list the registry and register the node
DEFAULT_START_TIMEOUT_S = 5.0


class Membership:
    """Registers ``node_id`` in ``registry`` at ``start()``, heartbeats, removes it at ``stop()``."""

    def __init__(
        self,
        registry: Registry,
        node_id: str,
        *,
        pool: str,
        capacity: int,
        running: Callable[[], int],
        labels: Mapping[str, str] | None = None,
        address: str = "",
        interval_s: float | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        self.registry = registry
        self.start_timeout_s = start_timeout_s
        self.node_id = node_id
        self.pool = pool
        self.capacity = capacity
        self.labels = dict(labels or {})
        self.address = address
        self.running = running
        self.interval_s = interval_s if interval_s is not None else min(registry.ttl_s / 3, 1.0)
        self.node: Node | None = None
        self.beats = 0
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._leaving: asyncio.Task[None] | None = None
        self._registering = False  # the start got as far as registering (a node may be listed)
        self._rng = random.Random()

    async def start(self) -> None:
        """Start the registry, register the node (``ClusterError`` if Redis cannot be reached
        within ``start_timeout_s``).

        The registering runs in a task of its own that a cancel of ``start`` does not
        interrupt (it is bounded by the registry's deadline): a register cut off half-way
        may still be applied by Redis, after a removal sent meanwhile. A cancel of
        ``start``, or a ``leave()`` while it runs (a worker's SIGTERM), waits for it and
        then removes the node, so a node whose register was in flight never stays listed."""
        if self._starting is None:
            self._starting = asyncio.create_task(self._start(), name=f"weirflow-node-{self.node_id}-start")
        try:
            await asyncio.shield(self._starting)
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + self.start_timeout_s
        if not await self._retrying(self.registry.start, until):
            return  # left while listing: nothing registered
        self._registering = True
        try:
            if not await self._retrying(self._register, until):
                return  # left while registering: ``_leave`` removes what may have landed
        except ClusterError:
            # the register may have been applied all the same (an answer that came too late)
            await self._remove()
            await self.registry.close()
            raise
        if self._leaving is None:  # (a leave() during the start removes the node instead)
            self._task = asyncio.create_task(self._beat(), name=f"weirflow-node-{self.node_id}")

    async def _retrying(self, step: Callable[[], Awaitable[object]], until: float) -> bool:
        """``step()``, tried again after a ``ClusterError`` (with a backoff) until ``until``
        (loop time), as long as calls miss their deadline (Redis is slow); a refused
        connection fails at once. False if a ``leave()`` came while it was being tried
        again: the start is given up, as a leave after it would have undone it (a worker's
        SIGTERM during a slow start is a stop, not a failed start)."""
        loop = asyncio.get_running_loop()
        delay_s = 0.1
        misses = self.registry.metrics.deadline_misses
        while True:
            try:
                await step()
                return True
            except ClusterError as e:
                # (only a Redis that answers late: one that refuses connections is not there)
                late = self.registry.metrics.deadline_misses > misses
                if late and self._leaving is not None:
                    return False
                if not late or loop.time() + delay_s > until:
                    raise
                log.warning("cluster node start failed, trying again", node=self.node_id, error=str(e))
            await asyncio.sleep(delay_s * self._rng.uniform(0.8, 1.0))  # a backoff
            delay_s = min(delay_s * 2, 1.0)
            if self._leaving is not None:
                return False

    async def _register(self) -> None:
        self.node = await self.registry.register(
            self.node_id,
            pool=self.pool,
            capacity=self.capacity,
            labels=self.labels,
            address=self.address,
            running=self._running(),
        )

    def _running(self) -> int:
        return max(0, int(self.running()))

    async def beat(self) -> Node:
        """One heartbeat now (registering again if the node is gone)."""
        try:
            self.node = await self.registry.heartbeat(self.node_id, running=self._running())
        except NodeGoneError:
            log.warning("cluster node was gone, registering again", node=self.node_id)
            await self._register()
        self.beats += 1
        assert self.node is not None
        return self.node

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s * self._rng.uniform(0.8, 1.0))  # a rate, with jitter
            try:
                await self.beat()
            except ClusterError as e:
                log.warning("cluster heartbeat failed", node=self.node_id, error=str(e))

    async def leave(self) -> None:
        """Stop heartbeating and remove the node now (best effort: it expires anyway).
        Idempotent; a worker calls it as soon as it is told to stop, since it may end its
        process once the shutdown grace is over."""
        if self._leaving is None:
            self._leaving = asyncio.create_task(self._leave(), name=f"weirflow-node-{self.node_id}-leave")
        await asyncio.shield(self._leaving)

    async def _leave(self) -> None:
        if self._starting is None:
            return  # never started: nothing registered
        await asyncio.wait([self._starting])  # a register in flight is applied first, then removed
        if self._starting.cancelled() or self._starting.exception() is not None:
            return  # it failed, and removed what it may have registered
        if not self._registering:
            return  # given up while listing: nothing was registered
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._remove()

    async def _remove(self) -> None:
        try:
            await self.registry.remove(self.node_id)
        except ClusterError as e:
            log.warning("cluster node not removed (it will expire)", node=self.node_id, error=str(e))

    async def stop(self) -> None:
        """``leave()``, then close the registry."""
        await self.leave()
        await self.registry.close()

    async def __aenter__(self) -> Membership:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
