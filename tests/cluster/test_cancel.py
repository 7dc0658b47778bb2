"""A registry's and a member's tasks end at their cancel wherever it lands.

Python 3.11's ``asyncio.wait_for`` (which redis-py uses to send every command) returns
the inner result when a cancel lands just as the command is sent, dropping the cancel
(CPython gh-86296): a loop around such a call would go on for ever and ``close()`` or a
worker's shutdown would hang."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from weirflow.cluster import Membership, Registry

from ..cancelling import cancel_outcomes

Make = Callable[..., Registry]


async def test_a_cancelled_registry_call_raises_cancelled_wherever_the_cancel_lands(
    redis_url: str, registries: Make
) -> None:
    reg = registries(redis_url)
    await reg.start()
    await reg.register("n", pool="p", capacity=1)
    calls: tuple[Callable[[], Awaitable[object]], ...] = (
        lambda: reg.heartbeat("n", running=0),
        lambda: reg.register("m", pool="p", capacity=1),
        lambda: reg._sweep(reg.revision),
        lambda: reg._read_log(block=False),
    )
    outcomes = await cancel_outcomes(calls, steps=40)
    assert outcomes["cancelled"] and set(outcomes) <= {"cancelled", "finished first"}, outcomes


async def test_a_member_and_its_registry_stop_wherever_the_stop_lands(redis_url: str) -> None:
    """The heartbeat loop, the follower and the probe, all busy (tiny intervals), end at
    once when the member stops at any step: a cancel that redis-py drops in the follower's
    blocking read does not keep it until the block's end (5 s here)."""
    for steps in range(60):
        reg = Registry(redis_url, deadline_s=1.0, probe_interval_s=0.001, follow_block_s=5.0)
        member = Membership(reg, f"w{steps}", pool="p", capacity=1, running=lambda: 0, interval_s=0.001)
        await member.start()
        for _ in range(steps):
            await asyncio.sleep(0)
        async with asyncio.timeout(4.0):  # (well below the block, on a loaded machine)
            await member.stop()
