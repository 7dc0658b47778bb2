"""The Redis store's connection: deadlines, reconnects, scripts and notifications.

redis-py (asyncio, hiredis) with a connection pool. Every call has a deadline
(``timeout_s``, default 5 s: a script over a big batch may take a while; connecting
``connect_timeout_s``): redis-py's own retries are off, so an unreachable server fails
a call with ``StoreError`` within its deadline instead of hanging. A connection the
server dropped (a restart) is discarded by redis-py when a call meets it; a call that
cannot have changed anything twice if repeated (a read, a renewal, a submit: its job
ids are made here, so a repeat finds them) is tried once more on a new connection,
the others raise ``StoreError`` and their caller decides. The next calls reconnect.

Notifications are pub/sub messages published by the scripts themselves (so they leave
with the change, atomically): one connection per store subscribes, and wakes the
store's waiters. Pub/sub does not replay what was published while it was
disconnected, so after a reconnect every waiter is woken to look again.

The URL's password never reaches a log or an error: ``url`` is the URL without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self

import redis.asyncio as aioredis
import redis.exceptions
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..cancels import cancels_now, raise_lost_cancel
from ..errors import StoreError
from ..redact import redact_text, redact_url
from . import redis_lua, rules
from .store import Clock
from .wakeup import Outcomes, Wakeups

log = structlog.get_logger("weirflow.durable")

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_CONNECT_TIMEOUT_S = 2.0
#: how long the notification connection waits for a message before pinging the server
LISTEN_PING_S = 5.0
LISTEN_RETRY_MAX_S = 5.0
#: the bounds of the re-read of ``wait_finished`` while notifications are down
RECHECK_S = (0.05, 1.0)
#: jobs indexed per ``REINDEX`` script (Redis answers nothing else while one runs)
REINDEX_CHUNK = 500
SCRIPTS = (
    "SUBMIT",
    "CLAIM",
    "RENEW",
    "COMPLETE",
    "PUT",
    "APPEND",
    "CLEAR_JOURNAL",
    "STEPS",
    "ADD_EVENT",
    "PAUSE",
    "SWEEPER",
    "DELETE",
    "SCHEDULE_PUT",
    "FIRE",
    "REASSIGN",
    "REINDEX",
    "COUNTS",
)


def redacted(url: str) -> str:
    """``url`` without its password (``redis://:***@host:port/db``, ``...?password=***``)."""
    return redact_url(url)


class RedisBase:
    """The connection and the helpers every RedisStore method uses."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = time.time,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        prefix: str = "weirflow",
    ) -> None:
        self._url = url
        self.url = redacted(url)
        self.clock = clock
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.prefix = prefix
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._wakeups = Wakeups()
        self._outcomes = Outcomes()
        self._schedule_wakeups = Wakeups()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._takeover = rules.TakeoverTimer()
        self._closing = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _client(self, *, socket_timeout: float | None) -> aioredis.Redis:
        try:
            return aioredis.Redis.from_url(
                self._url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=self.connect_timeout_s,
                retry=Retry(NoBackoff(), 0),
                decode_responses=False,
            )
        except ValueError as e:  # (a bad URL; its text has no password: ours is redacted)
            raise StoreError(f"store URL {self.url!r}: {str(e).replace(self._url, self.url)}") from None

    async def open(self) -> None:
        """Connect (nothing is written: a store is made by its first write)."""
        if self._redis is not None:
            return
        self._closing = False
        client = self._client(socket_timeout=self.timeout_s)
        self._scripts = {
            name: client.register_script(redis_lua.COMMON + getattr(redis_lua, name)) for name in SCRIPTS
        }
        self._redis = client
        try:
            await self._call(lambda r: r.ping(), retry=True)
        except StoreError:
            self._redis = None
            await client.aclose()
            raise

    async def close(self) -> None:
        self._closing = True  # (until the next open: the listener must not start again)
        if self._listener is not None:
            self._listener.cancel()
            # A cancel can be lost in a read (Python 3.11's asyncio.timeout turns a cancel
            # that meets its deadline into TimeoutError, which the listener takes for a lost
            # connection): the loop then stops at ``_closing``. Close waits at most a
            # deadline for it.
            await asyncio.wait([self._listener], timeout=self.timeout_s)
            self._listener = None
        if self._redis is not None:
            client, self._redis = self._redis, None
            await self._aclose(client)

    async def _aclose(self, closable: Any) -> None:
        """Close a client or a pub/sub within a deadline: closing waits for the connections
        to be given back, and one stuck in a read would hold a shutdown (and, at the
        event loop's end, the cancel of the listener) for ever."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout_s):
                await closable.aclose()

    async def _call(self, fn: Callable[[Any], Awaitable[Any]], *, retry: bool = False) -> Any:
        """``fn(client)`` within ``timeout_s``; Redis errors become ``StoreError``. With
        ``retry`` (a call safe to repeat), a lost connection is tried once more."""
        client = self._redis
        if client is None:
            raise StoreError(f"store {self.url} is not open")
        task, cancels = cancels_now()  # a cancel redis-py drops is raised: see weirflow.cancels
        for last in (not retry, True):
            try:
                async with asyncio.timeout(self.timeout_s + self.connect_timeout_s):
                    result = await fn(client)
                raise_lost_cancel(task, cancels)
                return result
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, TimeoutError) as e:
                raise_lost_cancel(task, cancels)
                if last:
                    raise StoreError(
                        f"Redis store {self.url}: {type(e).__name__}: {_clean(e, self)}"
                    ) from None
            except redis.exceptions.RedisError as e:
                raise_lost_cancel(task, cancels)
                raise StoreError(f"Redis store {self.url}: {type(e).__name__}: {_clean(e, self)}") from None
        raise AssertionError("unreachable")

    async def _indexed(self) -> None:
        """Make sure the counts and indexes are there: a store an older version wrote has none,
        and they are made once, ``REINDEX_CHUNK`` jobs per script (by whichever processes
        look first: each script goes on where the last one stopped)."""
        more = await self._run("REINDEX", [str(REINDEX_CHUNK)], retry=True)
        if not more:
            return
        log.info("redis_store_reindexing", store=self.url, version=redis_lua.INDEX_VERSION)
        while more:
            more = await self._run("REINDEX", [str(REINDEX_CHUNK)], retry=True)
        log.info("redis_store_reindexed", store=self.url, version=redis_lua.INDEX_VERSION)

    async def _do(self, command: str, *args: Any, retry: bool = True) -> Any:
        """One Redis command (``client.<command>(*args)``), as ``_call``."""
        return await self._call(lambda r: getattr(r, command)(*args), retry=retry)

    async def _run(self, name: str, args: list[Any], *, retry: bool = False) -> Any:
        """Run script ``name`` with ``args`` (the key prefix goes first)."""
        script = self._scripts[name]
        return await self._call(lambda r: script(keys=[], args=[self.prefix, *args], client=r), retry=retry)

    # -- notifications -------------------------------------------------------------------

    def _start_listening(self) -> None:
        if self._closing:
            return
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="weirflow:redis-listen"
            )

    async def listening(self) -> None:
        """Start listening and return once subscribed: from then on a change by any
        process wakes this store's waiters."""
        self._start_listening()
        await self._listening.wait()

    async def _listen(self) -> None:
        delay = 0.1
        channels = {self.key("n", "jobs"): self._wakeups, self.key("n", "sched"): self._schedule_wakeups}
        done_channel = self.key("n", "done").encode()
        by_name = {name.encode(): w for name, w in channels.items()}
        while not self._closing:
            client = self._client(socket_timeout=LISTEN_PING_S + self.timeout_s)
            pubsub = client.pubsub()
            try:
                async with asyncio.timeout(self.timeout_s + self.connect_timeout_s):
                    await pubsub.subscribe(*channels, done_channel.decode())
                    while (await pubsub.get_message(timeout=self.timeout_s)) is None:
                        pass  # (the subscribe confirmations come first)
                self._listening.set()
                delay = 0.1
                while not self._closing:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_PING_S)
                    if msg is None:  # quiet for a while: is the server still there?
                        async with asyncio.timeout(self.timeout_s):
                            await pubsub.ping()
                        continue
                    if msg.get("type") != "message":
                        continue
                    payload = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
                    if msg["channel"] == done_channel:  # (the ids of a batch, space separated)
                        for job_id in payload.split(" "):
                            self._outcomes.notify(job_id)
                    elif (target := by_name.get(msg["channel"])) is not None:
                        target.notify(payload)
            except (redis.exceptions.RedisError, TimeoutError, OSError) as e:
                log.warning("listen_failed", store=self.url, error=_clean(e, self), retry_in_s=delay)
            finally:
                await self._aclose(pubsub)
                await self._aclose(client)
            self._listening.clear()
            # what was published while disconnected is lost: every waiter looks again
            self._wakeups.notify_all()
            self._outcomes.notify_all()
            self._schedule_wakeups.notify_all()
            await asyncio.sleep(delay)  # a reconnect backoff
            delay = min(LISTEN_RETRY_MAX_S, delay * 2)


def _clean(e: BaseException, store: RedisBase) -> str:
    return redact_text(str(e).replace(store._url, store.url), store._url)
