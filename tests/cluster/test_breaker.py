"""The registry's circuit breaker counts failures in a row; a cancelled call is not one of
them, and not a success either."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import RedisError

from tests.redisserver import RedisServer
from weirflow.cluster.calls import BreakerState, Calls, connect
from weirflow.cluster.metrics import RegistryMetrics
from weirflow.errors import ClusterError

DEADLINE_S = 0.2
OPEN_S = 0.3


@pytest.fixture
async def calls_and_client(own_server: RedisServer) -> AsyncIterator[tuple[Calls, object]]:
    calls = Calls(
        metrics=RegistryMetrics(), deadline_s=DEADLINE_S, threshold=2, open_s=OPEN_S, on_state=lambda _: None
    )
    await calls.start()
    client = connect(own_server.url(), deadline_s=DEADLINE_S)
    try:
        # connected while Redis answers (the calls below wait on an open connection, not on a
        # connect); the client's 0.2 s socket timeout may miss the first answer on a loaded
        # machine, and that is no failure of ``calls``: the setup pings outside it
        async with asyncio.timeout(30):
            while True:
                try:
                    await client.ping()  # type: ignore[attr-defined]
                    break
                except RedisError:  # (redis-py's TimeoutError and ConnectionError)
                    await asyncio.sleep(0.05)  # a retry rate, not a wait for state
        yield calls, client
    finally:
        own_server.cont()
        await client.aclose(close_connection_pool=True)


async def cancelled_call(calls: Calls, client: object) -> None:
    """A call to the stopped Redis, cancelled while it waits for the answer."""
    task = asyncio.get_running_loop().create_task(calls.call("ping", client.ping))  # type: ignore[attr-defined]
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()


async def test_a_cancelled_call_does_not_reset_the_failures_in_a_row(
    own_server: RedisServer, calls_and_client: tuple[Calls, object]
) -> None:
    calls, client = calls_and_client
    own_server.pause()
    with pytest.raises(ClusterError, match="no answer"):
        await calls.call("ping", client.ping)  # type: ignore[attr-defined]
    await cancelled_call(calls, client)
    assert calls.state == "closed"
    with pytest.raises(ClusterError, match="no answer"):
        await calls.call("ping", client.ping)  # type: ignore[attr-defined]
    assert calls.state == "opened"  # two failures in a row, a cancel between them


async def test_a_cancelled_probe_does_not_close_a_half_open_breaker(
    own_server: RedisServer, calls_and_client: tuple[Calls, object]
) -> None:
    calls, client = calls_and_client
    own_server.pause()
    for _ in range(2):
        with pytest.raises(ClusterError, match="no answer"):
            await calls.call("ping", client.ping)  # type: ignore[attr-defined]
    assert calls.state == "opened"
    with pytest.raises(ClusterError, match="circuit open"):
        await calls.call("ping", client.ping)  # type: ignore[attr-defined]
    await asyncio.sleep(OPEN_S * 1.2)  # the breaker's open time passing (no event marks it)
    await cancelled_call(calls, client)  # let through half-open, then cancelled
    states: list[BreakerState] = [calls.state]
    with pytest.raises(ClusterError, match="no answer"):
        await calls.call("ping", client.ping)  # type: ignore[attr-defined]
    states.append(calls.state)
    assert states == ["half-opened", "opened"]  # the failing probe opens it again at once


async def test_redis_pys_own_socket_timeout_is_a_missed_deadline(own_server: RedisServer) -> None:
    """redis-py's socket timeout is set to the deadline too, and on a busy machine it can
    fire before the call's own: that is the deadline missed all the same (the membership's
    start tries again on a missed deadline; it gave up on 'TimeoutError: Timeout reading')."""
    metrics = RegistryMetrics()
    calls = Calls(metrics=metrics, deadline_s=5.0, threshold=2, open_s=OPEN_S, on_state=lambda _: None)
    await calls.start()
    client = connect(own_server.url(), deadline_s=DEADLINE_S)  # its socket timeout first, always
    try:
        await calls.call("ping", client.ping)
        own_server.pause()
        with pytest.raises(ClusterError, match="no answer within"):
            await calls.call("ping", client.ping)
        assert metrics.deadline_misses == 1
    finally:
        own_server.cont()
        await client.aclose(close_connection_pool=True)
