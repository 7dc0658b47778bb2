"""``Registry``: the node registry over Redis, read from a local cache that never waits on the network.

Writes (``register``, ``heartbeat``, ``drain``, ``remove``) are one Lua script each
(``scripts.py``). Reads (``get``, ``select``, ``nodes``) are plain method calls on
the cache (``cache.py``): no I/O, whatever state Redis is in.

Following: ``start()`` lists every record and the revision they are at, then a
follower reads the change log from that revision (``XREAD BLOCK``). After an error it
asks the server where it is (the sweep script answers revision, first log entry and
epoch) and replays from its last revision, or relists if the log was trimmed past it
or the data set is not the one it listed (Redis lost its data). A probe runs the
sweep every ``probe_interval_s``: it expires due nodes (their tombstones come back
through the log) and detects an outage within two intervals.

Status: ``starting`` until the first list has filled the cache (reads answer from an
empty cache: ``select`` returns None, ``nodes`` is empty), ``degraded`` while the
breaker is open (writes fail at once with ``ClusterError``; reads are served from the
cache, ``staleness_s`` grows), ``recovering`` from the first call let through until the
follower has caught up, ``normal`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

import orjson
import structlog

from ..errors import ClusterError, InvalidNodeError, NodeGoneError
from ..redact import redact_url
from ..redis_url import redis_url_problem
from . import scripts
from .cache import NodeCache, Reservation
from .calls import BreakerState, Calls, connect
from .keys import DEFAULT_PREFIX, Keys
from .metrics import RegistryMetrics
from .node import Decoder, Node, pairs
from .status_log import StatusLog

log = structlog.get_logger("weirflow.cluster")

Status = Literal["normal", "degraded", "recovering", "starting"]
STATUSES: tuple[Status, ...] = ("normal", "degraded", "recovering", "starting")
#: what the sweep tells of the server: revision, first log entry, epoch, an entry of the log
Where = tuple[int, int, str | None, dict[str, str] | None]

DEFAULT_TTL_S = 30.0
DEFAULT_DEADLINE_S = 0.1
DEFAULT_LOG_MAXLEN = 10_000
FOLLOW_BATCH = 1_000


def redact(url: str) -> str:
    """``url`` without its password, in its userinfo or a ``password=`` option (for logs
    and messages)."""
    return redact_url(url)


class Registry:
    """The cluster's nodes, cached locally and kept current from Redis.

    ``ttl_s``: a node without a heartbeat for that long is gone (it expires in Redis
    after ``ttl_s`` plus up to ``ttl_jitter`` of it, so nodes registered together do
    not expire together; reads exclude it locally after exactly ``ttl_s``).
    ``deadline_s``: the most any Redis call may take. ``breaker_threshold``
    consecutive failures open the circuit (status ``degraded``) for
    ``breaker_open_s``. ``log_maxlen``: the change log's approximate length.
    ``negative_ttl_s``: how long ``lookup`` remembers that an id is unknown.
    ``status_log_every_s``: a change of status is logged at once, the changes that follow
    within that long are logged together at its end (``StatusLog``).
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        deadline_s: float = DEFAULT_DEADLINE_S,
        prefix: str = DEFAULT_PREFIX,
        log_maxlen: int = DEFAULT_LOG_MAXLEN,
        ttl_jitter: float = 0.1,
        tombstone_ttl_s: float | None = None,
        probe_interval_s: float = 0.2,
        breaker_threshold: int = 2,
        breaker_open_s: float = 0.5,
        follow_block_s: float = 1.0,
        negative_ttl_s: float = 1.0,
        reservation_ttl_s: float | None = None,
        sweep_limit: int = 1_000,
        status_log_every_s: float = 10.0,
    ) -> None:
        if ttl_s <= 0 or deadline_s <= 0 or log_maxlen < 1:
            raise InvalidNodeError("ttl_s and deadline_s must be positive, log_maxlen at least 1")
        problem = redis_url_problem(url)
        if problem is not None:
            raise InvalidNodeError(f"registry URL {redact(url)!r}: {problem}")
        self.url = url
        self.safe_url = redact(url)
        self.ttl_s = ttl_s
        self.deadline_s = deadline_s
        self.keys = Keys(prefix)
        self.log_maxlen = log_maxlen
        self.ttl_jitter = ttl_jitter
        self.tombstone_ttl_s = tombstone_ttl_s if tombstone_ttl_s is not None else 10 * ttl_s
        self.probe_interval_s = probe_interval_s
        self.follow_block_s = follow_block_s
        self.negative_ttl_s = negative_ttl_s
        self.sweep_limit = sweep_limit
        self.metrics = RegistryMetrics()
        self.metrics.registry = self
        self.cache = NodeCache(reservation_ttl_s=reservation_ttl_s if reservation_ttl_s else ttl_s)
        self.revision = 0  # the last log entry applied (or the listed revision)
        self.epoch: str | None = None
        self._tip: dict[str, str] | None = None  # the log entry at ``revision``, as applied
        self._calls = Calls(
            metrics=self.metrics,
            deadline_s=deadline_s,
            threshold=breaker_threshold,
            open_s=breaker_open_s,
            on_state=self._breaker_changed,
        )
        self._status: Status = "starting"  # (until the first list: see ``_update_status``)
        self._status_log = StatusLog(self.safe_url, lambda: self._status, every_s=status_log_every_s)
        self._synced = False  # the follower is reading the log where the cache is
        self._listed = False  # a list has filled the cache (until then: status "starting")
        self._need_list = True
        self._current_at = time.monotonic()  # when the cache was last known current
        self._changed = asyncio.Event()  # set (and replaced) at every change of revision or status
        self._not_open = asyncio.Event()
        self._not_open.set()
        self._inflight: dict[str, asyncio.Task[Node | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._follow_client: Any = None
        self._scripts: dict[str, Any] = {}
        self._closed = False
        self._decode = Decoder()
        self._next_prune = 0.0
        # jitter from a generator of our own: the module's shared one is other code's
        # (hypothesis, for one, checks nobody else draws from it)
        self._rng = random.Random()
        self._epoch_seed = uuid.uuid4().hex
        self._calls_made = 0

    # -- lifecycle ------------------------------------------------------------------

    async def start(self, *, require: bool = True) -> None:
        """Connect, list every node, then follow the change log. ``ClusterError`` if the
        first list fails (Redis down or too slow); with ``require=False`` the registry
        starts empty instead (``status`` not ``normal``) and lists as soon as Redis answers
        (a server that shows nodes should start during an outage)."""
        self._client = connect(self.url, deadline_s=self.deadline_s)
        self._follow_client = connect(self.url, deadline_s=self._follow_deadline_s)
        for name in ("REGISTER", "HEARTBEAT", "DRAIN", "REMOVE", "SWEEP", "LIST", "GET"):
            self._scripts[name] = self._client.register_script(getattr(scripts, name))
        await self._calls.start()
        try:
            await self._relist()
        except ClusterError as e:
            if require:
                await self._disconnect()
                raise
            log.warning("cluster registry: redis not reachable yet", url=self.safe_url, error=str(e))
            self._update_status()
        self._tasks = [
            asyncio.create_task(self._follow(), name="weirflow-cluster-follow"),
            asyncio.create_task(self._probe(), name="weirflow-cluster-probe"),
        ]
        log.info("cluster registry started", url=self.safe_url, revision=self.revision)

    async def close(self) -> None:
        self._closed = True
        self._status_log.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._disconnect()

    async def _disconnect(self) -> None:
        for client in (self._client, self._follow_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose(close_connection_pool=True)
        self._client = self._follow_client = None

    async def __aenter__(self) -> Registry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- status ---------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self._status

    @property
    def _follow_deadline_s(self) -> float:
        """The blocking read's deadline: its block, and more slack than a plain call (its answer
        comes at the end of the block, when a busy machine may not read it at once)."""
        return self.follow_block_s + max(self.deadline_s, self.follow_block_s / 2)

    @property
    def staleness_s(self) -> float:
        """Seconds since the cache was last known to hold every change (0 while following)."""
        return time.monotonic() - self._current_at

    def _update_status(self) -> None:
        state = self._calls.state
        new: Status
        if not self._listed:
            new = "starting"  # never listed: the cache is empty, whatever the breaker says
        elif state == "opened":
            new = "degraded"
        elif state == "half-opened" or not self._synced:
            new = "recovering"
        else:
            new = "normal"
        if new != self._status:
            if self._status != "starting":  # (the first list is the start, not a switch of mode)
                self._status_log.changed(new, self._status)
                self.metrics.mode_switches += 1
            elif self._tasks:  # listed after a start that could not: say so once
                log.info("cluster registry listed", url=self.safe_url, revision=self.revision, status=new)
            self._status = new
            self._notify()

    def _breaker_changed(self, state: BreakerState) -> None:
        if state == "opened":
            self._synced = False
            self._not_open.clear()
        else:
            self._not_open.set()
        self._update_status()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], *, timeout_s: float) -> None:
        """Wait until ``predicate()`` holds, checked at each change of revision or status;
        ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await self._changed.wait()

    async def wait_revision(self, revision: int, *, timeout_s: float) -> None:
        await self.wait_for(lambda: self.revision >= revision, timeout_s=timeout_s)

    async def wait_status(self, status: Status, *, timeout_s: float) -> None:
        await self.wait_for(lambda: self._status == status, timeout_s=timeout_s)

    # -- reads: local cache only ----------------------------------------------------------

    def get(self, node_id: str) -> Node | None:
        """The node, or None (unknown or a tombstone); ``state == "down"`` if its heartbeat
        is older than its ``ttl_s``. No I/O."""
        return self.cache.get(node_id, time.time())

    def nodes(self, pool: str | None = None) -> list[Node]:
        """Live nodes (of ``pool``), sorted by pool and id; stale ones as ``down``. No I/O."""
        return self.cache.nodes(pool, time.time())

    def select(
        self, pool: str, labels: Mapping[str, str] | None = None, *, exclude: Collection[str] = ()
    ) -> Node | None:
        """The least loaded ``up`` node of ``pool`` with every one of ``labels`` and a free
        slot, counting local reservations, whose id is not in ``exclude``; None if there is
        none. No I/O."""
        return self.cache.select(pool, labels, time.time(), exclude)

    def reserve(
        self, pool: str, labels: Mapping[str, str] | None = None, *, exclude: Collection[str] = ()
    ) -> Reservation | None:
        """``select``, and hold one slot of the node until the reservation is acknowledged."""
        node = self.select(pool, labels, exclude=exclude)
        return None if node is None else self.cache.reserve(node)

    def gone(self) -> list[Node]:
        """The nodes the cache knows to be gone (``down``): tombstones, and nodes whose
        heartbeat is older than their ttl. No I/O."""
        return self.cache.gone(time.time())

    async def lookup(self, node_id: str) -> Node | None:
        """``get``, but an id the cache does not know is asked of Redis once: concurrent
        lookups of one id share one call (singleflight), and an id Redis does not know
        either is remembered as unknown for ``negative_ttl_s``."""
        known = self.cache.records.get(node_id)
        if known is not None:
            return self.get(node_id)
        negative = self.cache.negative.get(node_id)
        if negative is not None and negative > time.monotonic():
            return None
        pending = self._inflight.get(node_id)
        if pending is None:
            pending = asyncio.create_task(self._fetch(node_id), name=f"weirflow-cluster-lookup-{node_id}")
            self._inflight[node_id] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(node_id, None))
        return await asyncio.shield(pending)

    async def _fetch(self, node_id: str) -> Node | None:
        flat = await self._run("get", "GET", node_id)
        if not flat:
            self.cache.negative[node_id] = time.monotonic() + self.negative_ttl_s
            return None
        self.cache.apply(self._decode(pairs(flat)))
        return self.get(node_id)

    # -- writes: one script each ------------------------------------------------------

    async def _run(self, what: str, script: str, *args: object) -> Any:
        self._calls_made += 1  # a fresh epoch candidate per call: see scripts.py
        argv = [self.keys.node_prefix, self.log_maxlen, f"{self._epoch_seed}-{self._calls_made}", *args]
        keys = [self.keys.revision, self.keys.log, self.keys.expiry, self.keys.ids, self.keys.epoch]
        fn = self._scripts.get(script)
        if fn is None:
            raise ClusterError("the registry is not started")
        return await self._calls.call(what, lambda: fn(keys=keys, args=argv))

    def _expire_in_ms(self) -> int:
        return int(self.ttl_s * 1000 * (1 + self._rng.uniform(0, self.ttl_jitter)))

    def _tombstone_ms(self) -> int:
        return int(self.tombstone_ttl_s * 1000 * (1 + self._rng.uniform(0, self.ttl_jitter)))

    def _took(self, flat: list[str]) -> Node:
        node = self._decode(pairs(flat))
        self.cache.apply(node)  # read your writes; the log entry comes later at the same revision
        return node

    async def register(
        self,
        node_id: str,
        *,
        pool: str,
        capacity: int,
        labels: Mapping[str, str] | None = None,
        address: str = "",
        running: int = 0,
    ) -> Node:
        """Register (or register again) a node, ``up``, with a new revision."""
        labels = dict(labels or {})
        _check(node_id, pool=pool, capacity=capacity, running=running, labels=labels)
        flat = await self._run(
            "register",
            "REGISTER",
            node_id,
            pool,
            orjson.dumps(labels).decode(),
            capacity,
            running,
            address,
            int(self.ttl_s * 1000),
            self._expire_in_ms(),
        )
        return self._took(flat)

    async def heartbeat(self, node_id: str, *, running: int, capacity: int | None = None) -> Node:
        """Report the node alive with ``running`` jobs (and its ``capacity`` if it changed).
        ``NodeGoneError`` if it is not live (it registers again)."""
        if isinstance(running, bool) or not isinstance(running, int) or running < 0:
            raise InvalidNodeError(f"running must be an int >= 0, not {running!r}")
        if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
            raise InvalidNodeError(f"capacity must be an int >= 1, not {capacity!r}")
        flat = await self._run(
            "heartbeat",
            "HEARTBEAT",
            node_id,
            running,
            "" if capacity is None else capacity,
            self._expire_in_ms(),
            self._tombstone_ms(),
        )
        if not flat:
            raise NodeGoneError(node_id)
        return self._took(flat)

    async def drain(self, node_id: str) -> Node:
        """Mark the node ``draining``: still listed, never selected. ``NodeGoneError`` if not live."""
        flat = await self._run("drain", "DRAIN", node_id, self._tombstone_ms())
        if not flat:
            raise NodeGoneError(node_id)
        return self._took(flat)

    async def remove(self, node_id: str) -> bool:
        """Remove the node (a tombstone); False if it was not live."""
        flat = await self._run("remove", "REMOVE", node_id, self._tombstone_ms())
        if not flat:
            return False
        self._took(flat)
        return True

    # -- following ------------------------------------------------------------------------

    async def _relist(self) -> None:
        reply = await self._run("list", "LIST")
        revision, epoch, tip, records = int(reply[0]), reply[1], reply[2], reply[3:]
        self.cache.replace_all(self._decode(pairs(flat)) for flat in records)
        self.revision = revision
        self.epoch = epoch
        self._tip = pairs(tip) if tip else None
        self._need_list = False
        self._listed = True
        self.metrics.relists += 1
        self._mark_current()
        self._notify()

    def _mark_current(self) -> None:
        self._current_at = time.monotonic()
        if not self._synced:
            self._synced = True
            self._update_status()

    async def _sweep(self, revision: int) -> Where:
        """Where the server is: revision, first log entry, epoch, and its log entry at ``revision``."""
        reply = await self._run("sweep", "SWEEP", self._tombstone_ms(), self.sweep_limit, revision)
        return int(reply[0]), int(reply[1]), reply[3], pairs(reply[4]) if reply[4] else None

    def _rewound(self, revision: int, tip: dict[str, str] | None, server: Where) -> bool:
        """Whether the server holds another history than the one we applied up to ``revision``
        (whose log entry was ``tip``): another epoch (it restarted empty), a lower revision (it
        lost its last writes), or, once writes made after such a loss have reused our revision,
        another entry at that revision."""
        server_rev, _, epoch, entry = server
        if epoch != self.epoch or server_rev < revision:
            return True
        return tip is not None and entry is not None and entry != tip

    async def _resync(self) -> None:
        """After an error: replay from our revision if the log still has it, else relist."""
        revision, tip = self.revision, self._tip
        server = await self._sweep(revision)
        server_rev, first_rev, _, _ = server
        if self._rewound(revision, tip, server):
            self._lost_data()
            await self._relist()
        elif server_rev > self.revision and (first_rev == 0 or first_rev > self.revision + 1):
            log.info("cluster registry: log trimmed past our revision, relisting", url=self.safe_url)
            await self._relist()
        else:
            self.metrics.replays += 1

    def _lost_data(self) -> None:
        """Redis holds another data set than the one we listed (restarted empty, or lost its
        last writes): our revisions mean nothing there, so relist."""
        if not self._need_list:
            self.metrics.rewinds += 1
            log.warning("cluster registry: redis lost data, relisting", url=self.safe_url)
        self._need_list = True
        self._synced = False

    async def _follow(self) -> None:
        backoff_s = self.deadline_s
        while not self._closed:
            try:
                if self._need_list:
                    await self._relist()
                elif not self._synced:
                    await self._resync()
                    await self._read_log(block=False)  # catch up now, not after a quiet block
                    continue
                try:
                    await self._read_log()
                except ClusterError as e:
                    # A blocking read that failed (often: answered late on a busy machine) is
                    # an outage only if Redis does not answer the probe's sweep and a
                    # read that does not block either; meanwhile the status stays.
                    log.debug("cluster registry: follow read failed", error=str(e), url=self.safe_url)
                    self.metrics.follow_retries += 1
                    await self._resync()
                    await self._read_log(block=False)
                backoff_s = self.deadline_s
            except ClusterError as e:
                self._synced = False
                self._update_status()
                log.debug("cluster registry: follow failed", error=str(e), url=self.safe_url)
                await self._not_open.wait()
                await asyncio.sleep(backoff_s * self._rng.uniform(0.5, 1.0))  # backoff, not a wait for state
                backoff_s = min(backoff_s * 2, 1.0)

    async def _read_log(self, *, block: bool = True) -> None:
        stream = self.keys.log
        client = self._follow_client
        after = f"{self.revision}-0"
        block_ms = int(self.follow_block_s * 1000) if block else None
        reply = await self._calls.call(
            "xread",
            lambda: client.xread({stream: after}, count=FOLLOW_BATCH, block=block_ms),
            deadline_s=self._follow_deadline_s if block else self.deadline_s,
            breaker=False,
        )
        entries = reply[0][1] if reply else []
        for entry_id, fields in entries:
            rev = int(entry_id.split("-", 1)[0])
            if rev != self.revision + 1:
                log.info("cluster registry: gap in the log, relisting", url=self.safe_url)
                self._need_list = True
                self._synced = False
                return
            self.cache.apply(self._decode(fields))
            self.revision = rev
            self._tip = fields
            self.metrics.events_applied += 1
        if entries:
            self._notify()
        if len(entries) < FOLLOW_BATCH:
            self._mark_current()

    async def _probe(self) -> None:
        """The sweep as liveness probe: expires due nodes and notices outages and lost data."""
        while not self._closed:
            await asyncio.sleep(self.probe_interval_s * self._rng.uniform(0.8, 1.2))  # a rate
            # the follower may apply newer entries while the sweep is out
            before, tip = self.revision, self._tip
            try:
                server = await self._sweep(before)
            except ClusterError:
                continue
            server_rev = server[0]
            if self._rewound(before, tip, server):
                self._lost_data()
            elif server_rev == before == self.revision and self._synced:
                self._current_at = time.monotonic()
            if self._calls.state == "closed":
                self._update_status()
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + min(10.0, self.tombstone_ttl_s)
                self.cache.prune_tombstones(time.time() - self.ttl_s - self.tombstone_ttl_s)

    def status_report(self) -> dict[str, object]:
        """Status, revision, staleness and metrics as plain values (``/readyz``, the CLI)."""
        return {
            "url": self.safe_url,
            "status": self._status,
            "revision": self.revision,
            "staleness_s": self.staleness_s,
            "nodes": len(self.nodes()),
            "metrics": self.metrics.snapshot(),
        }


def _check(node_id: str, *, pool: str, capacity: int, running: int, labels: dict[str, str]) -> None:
    problems = []
    if not isinstance(node_id, str) or not node_id or len(node_id) > 200:
        problems.append(f"node id must be a non-empty string of at most 200 characters, not {node_id!r}")
    if not isinstance(pool, str) or not pool:
        problems.append(f"pool must be a non-empty string, not {pool!r}")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        problems.append(f"capacity must be an int >= 1, not {capacity!r}")
    if isinstance(running, bool) or not isinstance(running, int) or running < 0:
        problems.append(f"running must be an int >= 0, not {running!r}")
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str):
            problems.append(f"labels must map strings to strings: {k!r}: {v!r}")
    if problems:
        raise InvalidNodeError("; ".join(problems))
