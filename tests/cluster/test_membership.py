"""A process as a node: registered at start, heartbeating its running count, removed at stop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from tests.looplag import loop_lag
from tests.redisserver import RedisServer
from weirflow.cluster import ClusterError, Membership, Registry

Make = Callable[..., Registry]


async def test_a_member_heartbeats_its_running_count_and_is_removed_at_stop(
    redis_url: str, registries: Make
) -> None:
    watcher = registries(redis_url)
    await watcher.start()
    running = [0]
    member = Membership(
        registries(redis_url, ttl_s=3),
        "worker-1",
        pool="cpu",
        capacity=2,
        labels={"zone": "a"},
        running=lambda: running[0],
        interval_s=0.02,
    )
    await member.start()
    try:
        await watcher.wait_for(lambda: watcher.get("worker-1") is not None, timeout_s=2)
        assert watcher.select("cpu", {"zone": "a"}) is not None
        running[0] = 2  # the worker is full: the next heartbeat says so
        await watcher.wait_for(
            lambda: watcher.get("worker-1") is not None and watcher.get("worker-1").running == 2,  # type: ignore[union-attr]
            timeout_s=2,
        )
        assert watcher.select("cpu") is None  # no free slot
        running[0] = 1
        await watcher.wait_for(lambda: watcher.select("cpu") is not None, timeout_s=2)
    finally:
        await member.stop()
    await watcher.wait_for(lambda: watcher.get("worker-1") is None, timeout_s=2)
    assert watcher.cache.records["worker-1"].state == "down"


async def test_a_member_found_gone_registers_again(redis_url: str, registries: Make) -> None:
    reg = registries(redis_url, ttl_s=3)
    member = Membership(reg, "w", pool="cpu", capacity=1, running=lambda: 0, interval_s=3600)
    await member.start()
    try:
        first = member.node
        assert first is not None
        other = registries(redis_url)
        await other.start()
        await other.remove("w")  # say an operator removed it, or it expired during a stall
        again = await member.beat()
        assert again.state == "up" and again.revision > first.revision + 1
        assert reg.get("w") == again
    finally:
        await member.stop()


async def live_after(redis_url: str, registries: Make, node_id: str) -> bool:
    """Whether Redis lists ``node_id`` as live (a registry started now lists what Redis holds)."""
    fresh = registries(redis_url, deadline_s=5.0)  # (often just after Redis resumed, on a busy machine)
    await fresh.start()
    try:
        return fresh.get(node_id) is not None
    finally:
        await fresh.close()


async def test_a_start_cancelled_at_any_step_leaves_no_node_registered(
    redis_url: str, registries: Make
) -> None:
    """A cancel of ``start`` (the worker's task cancelled while it registers) wherever it
    lands: the node is removed (or was never registered), the registry is closed."""
    outcomes: Counter[str] = Counter()
    for steps in range(40):
        member = Membership(registries(redis_url), f"c{steps}", pool="p", capacity=1, running=lambda: 0)
        task = asyncio.get_running_loop().create_task(member.start())
        for _ in range(steps):
            await asyncio.sleep(0)
        if task.done():
            outcomes["started first"] += 1
            await member.stop()
        else:
            task.cancel()
            await asyncio.wait([task])
            outcomes["cancelled" if task.cancelled() else f"went on: {task!r}"] += 1
        assert not await live_after(redis_url, registries, f"c{steps}"), steps
        assert member.registry._client is None, steps  # not left connected
    assert outcomes["cancelled"] and set(outcomes) <= {"cancelled", "started first"}, outcomes


async def test_a_leave_during_start_removes_the_node_wherever_it_lands(
    redis_url: str, registries: Make
) -> None:
    """SIGTERM while ``weirflow worker`` registers its node: the stop handler's ``leave()``
    runs during ``start()``; the node must not stay registered nor keep heartbeating."""
    for steps in range(40):
        member = Membership(
            registries(redis_url), f"l{steps}", pool="p", capacity=1, running=lambda: 0, interval_s=0.01
        )
        starting = asyncio.get_running_loop().create_task(member.start())
        for _ in range(steps):
            await asyncio.sleep(0)
        leaving = asyncio.get_running_loop().create_task(member.leave())  # the signal handler
        async with asyncio.timeout(10.0):
            await starting
            await leaving
            await member.stop()  # what the worker does once its run ends
        assert member._task is None, steps  # no heartbeat goes on
        assert not await live_after(redis_url, registries, f"l{steps}"), steps


async def test_a_leave_during_a_start_that_redis_answers_late_ends_the_start_without_error(
    own_server: RedisServer, registries: Make
) -> None:
    """SIGTERM while ``weirflow worker --registry`` is still trying to list or register
    because Redis answers late: the start ends as it does when the signal comes during a
    quick start (no error: the worker was told to stop), no node is left registered and no
    heartbeat runs."""
    url = own_server.url(0)
    for pause_s in (0.05, 0.35):  # a leave during the first call, or during a later try
        member = Membership(
            registries(url, deadline_s=0.1), f"n{pause_s}", pool="p", capacity=1, running=lambda: 0
        )
        own_server.pause()
        try:
            starting = asyncio.get_running_loop().create_task(member.start())
            await asyncio.sleep(pause_s)
            leaving = asyncio.get_running_loop().create_task(member.leave())  # the signal handler
            async with asyncio.timeout(10.0):
                await asyncio.wait([starting])
        finally:
            own_server.cont()
        async with asyncio.timeout(10.0):
            await starting  # no ClusterError
            await leaving
            await member.stop()
        assert member._task is None
        assert not await live_after(url, registries, f"n{pause_s}")


async def test_a_start_while_redis_does_not_answer_for_a_moment_registers_once_it_does(
    own_server: RedisServer, registries: Make
) -> None:
    """``weirflow worker --registry`` starting while Redis answers late (a loaded machine):
    the first list misses its deadline, the start tries again and the node registers; a
    Redis that stays away still fails the start, within ``start_timeout_s``."""
    url = own_server.url(0)
    member = Membership(registries(url, deadline_s=0.1), "late", pool="p", capacity=1, running=lambda: 0)
    own_server.pause()
    try:
        starting = asyncio.get_running_loop().create_task(member.start())
        await asyncio.sleep(0.5)  # (how long Redis does not answer: the test's outage)
        assert not starting.done()
    finally:
        own_server.cont()
    try:
        async with asyncio.timeout(10.0):
            await starting
        assert member.node is not None and member.node.state == "up"
        watcher = registries(url, deadline_s=5.0)  # (Redis has just resumed, on a busy machine)
        await watcher.start()
        assert watcher.get("late") is not None
    finally:
        await member.stop()

    gone = Membership(
        registries(url, deadline_s=0.1), "never", pool="p", capacity=1, running=lambda: 0, start_timeout_s=1.0
    )
    own_server.pause()
    try:
        async with loop_lag() as lag:
            with pytest.raises(ClusterError):
                await gone.start()
        # the timeout, and one last call's deadline (the time this process could not run aside)
        assert lag.own_s < 1.0 + 1.0, (lag.elapsed_s, lag.late_s)
    finally:
        own_server.cont()
