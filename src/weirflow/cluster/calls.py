"""Every Redis call of a registry goes through ``Calls``: a deadline, a circuit breaker, metrics.

The breaker is purgatory's (maintained, asyncio-native, typed): ``threshold``
consecutive failures open it; while open, calls fail at once with ``ClusterError``
(no network I/O, so nothing hangs during an outage); after ``open_s`` it lets calls
through half-open, and the first success closes it. The deadline is enforced twice:
redis-py's own socket timeouts are set to it (see ``client_options``) and the call
runs under ``asyncio.timeout`` too, which also bounds the time spent connecting and
any time spent waiting for a pooled connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as SocketTimeout

from ..cancels import keeping_cancels, promptly
from ..errors import ClusterError
from .metrics import RegistryMetrics

T = TypeVar("T")
BreakerState = Literal["closed", "opened", "half-opened"]
CIRCUIT = "redis"
MAX_CONNECTIONS = 32


def client_options(*, deadline_s: float) -> dict[str, Any]:
    """redis-py settings so a call never outlives its deadline: no retries (the
    default retries three times with backoff: an outage would cost seconds per
    call), socket timeouts at the deadline, no health-check round trips."""
    return {
        "socket_timeout": deadline_s,
        "socket_connect_timeout": deadline_s,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "retry_on_error": [],
        "health_check_interval": 0,
        "decode_responses": True,
        "protocol": 2,
    }


class Calls:
    """Runs Redis calls under a deadline and one breaker; tells ``on_state`` of changes."""

    def __init__(
        self,
        *,
        metrics: RegistryMetrics,
        deadline_s: float,
        threshold: int,
        open_s: float,
        on_state: Callable[[BreakerState], None],
    ) -> None:
        self.metrics = metrics
        self.deadline_s = deadline_s
        self.state: BreakerState = "closed"
        self._on_state = on_state
        # A ResponseError must not open the breaker: it is a bug or bad data (a script error),
        # not an outage. A CancelledError (a caller that gave up: a wait_for's timeout, a
        # cancelled request or heartbeat) is neither a success nor a failure, which purgatory
        # cannot express (it ends an excluded exception's call as a success: a cancel would
        # reset the count of consecutive failures, and close a half-open breaker as a
        # successful probe would), so a cancelled call never reaches it: see ``call``.
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=open_s, exclude=[ResponseError]
        )
        self._factory.add_listener(self._listen)
        self._breaker: Any = None

    async def start(self) -> None:
        await self._factory.initialize()
        self._breaker = await self._factory.get_breaker(CIRCUIT)

    def _listen(self, name: str, event_type: str, event: Any) -> None:
        if event_type == "state_changed":
            self.state = event.state
            self._on_state(event.state)

    async def call(
        self,
        what: str,
        fn: Callable[[], Awaitable[T]],
        *,
        deadline_s: float | None = None,
        breaker: bool = True,
    ) -> T:
        """``await fn()`` within the deadline, or ``ClusterError`` (at once while the breaker is
        open). ``breaker=False``: the call neither waits on nor feeds the breaker (the
        follower's blocking read, whose late answer on a busy machine is not an outage:
        the probe and the writes are what open the breaker)."""
        deadline = self.deadline_s if deadline_s is None else deadline_s
        if not breaker:
            return await self._unguarded(what, fn, deadline)
        brk = self._breaker
        try:
            await brk.__aenter__()  # raises OpenedState while open: no call, no I/O
        except OpenedState:
            raise ClusterError(f"redis {what}: the registry is degraded (circuit open)") from None
        started = time.perf_counter()
        missed = failed = False
        try:
            try:
                with keeping_cancels():  # the caller's cancel, even if redis-py dropped it
                    async with asyncio.timeout(deadline):
                        result = await fn()
            except asyncio.CancelledError:
                await self._deliver(brk)  # no outcome: the breaker's count stays as it was
                raise
            except BaseException as e:
                missed = isinstance(e, TimeoutError | SocketTimeout)
                failed = isinstance(e, RedisError | OSError) and not missed
                await brk.__aexit__(type(e), e, e.__traceback__)
                raise
            await brk.__aexit__(None, None, None)
            return result
        except (TimeoutError, SocketTimeout):
            # (redis-py's socket timeout is the deadline too: whichever of the two fires first
            # on a busy machine, the call missed its deadline)
            raise ClusterError(f"redis {what}: no answer within {deadline:.3g}s") from None
        except ResponseError as e:
            raise ClusterError(f"redis {what}: {e}") from None
        except (RedisError, OSError) as e:
            raise ClusterError(f"redis {what}: {type(e).__name__}: {e}") from None
        finally:
            self.metrics.observe(
                time.perf_counter() - started, failed=failed or missed, deadline_missed=missed
            )

    @staticmethod
    async def _deliver(brk: Any) -> None:
        """Hand on what entering the breaker changed (open to half-open) without ending the
        call as a success or a failure: what purgatory's ``__aexit__`` does after counting."""
        while brk.context.messages:
            await brk.messagebus.handle(brk.context.messages.pop(0), brk.uow)

    async def _unguarded(self, what: str, fn: Callable[[], Awaitable[T]], deadline: float) -> T:
        started = time.perf_counter()
        missed = failed = False
        try:
            with keeping_cancels():  # the caller's cancel, even if redis-py dropped it
                async with asyncio.timeout(deadline):
                    return await promptly(fn())  # a blocking read: a cancel ends it at once
        except (TimeoutError, SocketTimeout):
            missed = True
            raise ClusterError(f"redis {what}: no answer within {deadline:.3g}s") from None
        except ResponseError as e:
            raise ClusterError(f"redis {what}: {e}") from None
        except (RedisError, OSError) as e:
            failed = True
            raise ClusterError(f"redis {what}: {type(e).__name__}: {e}") from None
        finally:
            self.metrics.observe(
                time.perf_counter() - started, failed=failed or missed, deadline_missed=missed
            )


def connect(url: str, *, deadline_s: float, max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
    """A client whose pool makes callers wait for a free connection (bounded by the
    deadline) instead of failing with ``MaxConnectionsError`` when many calls run at once."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=deadline_s, **client_options(deadline_s=deadline_s)
    )
    return aioredis.Redis(connection_pool=pool)
