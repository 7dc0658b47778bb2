"""``SendWindow``: at most ``capacity`` sent items wait to be finished; a send that finds
it full waits for a place, and one that gives up leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

import weirflow as wf
from weirflow.supervise.sends import SendWindow


async def fill(capacity: int) -> SendWindow:
    window = SendWindow(capacity)
    for i in range(capacity):
        await window.reserve(0.0, slot="w.inp")
        window.add("w.inp", i, child=None)
    return window


async def test_timed_out_reserves_leave_no_waiter_behind_while_the_window_stays_full() -> None:
    window = await fill(1)
    for _ in range(10_000):  # a client retrying on every 429 while the pipeline is stuck
        with pytest.raises(wf.PipelineStateError):
            await window.reserve(0.0, slot="w.inp")
    assert window.waiting == 0


async def test_cancelled_reserves_leave_no_waiter_behind() -> None:
    window = await fill(1)
    waits = [asyncio.ensure_future(window.reserve(None, slot="w.inp")) for _ in range(100)]
    await asyncio.sleep(0)  # (one turn: every wait has queued its future)
    assert window.waiting == 100
    for w in waits:
        w.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    assert window.waiting == 0


async def test_a_send_still_waiting_gets_the_place_an_ack_frees_after_others_gave_up() -> None:
    window = await fill(2)
    for _ in range(50):
        with pytest.raises(wf.PipelineStateError):
            await window.reserve(0.0, slot="w.inp")
    waiting = asyncio.ensure_future(window.reserve(30.0, slot="w.inp"))
    await asyncio.sleep(0)
    assert window.waiting == 1 and not waiting.done()
    window.ack([1])
    await asyncio.wait_for(waiting, 10)
    assert (len(window), window.reserved, window.waiting) == (1, 1, 0)


async def test_a_full_window_names_its_own_limit() -> None:
    window = await fill(3)
    with pytest.raises(wf.SendWindowFullError) as refused:
        await window.reserve(0.05, slot="w.inp")
    e = refused.value
    assert (e.state, e.slot, e.unacked, e.capacity) == ("full", "w.inp", 3, 3)
    assert "unacked_capacity 3" in str(e) and "send window" in str(e)
    # the same retry loop as for a full slot, in process and over HTTP
    assert isinstance(e, wf.PipelineStateError) and isinstance(e, wf.SlotFullError)
