"""A process as a node: registered at start, heartbeating its running count, removed at stop."""

from __future__ import annotations

from collections.abc import Callable

from weirflow.cluster import Membership, Registry

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
