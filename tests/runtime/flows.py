"""Small routines the runtime tests wire into flows."""

from __future__ import annotations

import asyncio
from typing import Any

import weirflow as wf


class Burst(wf.Routine):
    """On a trigger ``n``, emits 0..n-1; counts SlotFullError per item if ``catch``."""

    go = wf.Slot()
    out = wf.Event()
    rejected = wf.Event()

    @go.handler
    async def burst(self, n: int, ctx: wf.Context) -> None:
        catch = getattr(self, "catch", False)
        for i in range(n):
            try:
                await ctx.emit(self.out, i)
            except wf.SlotFullError:
                if not catch:
                    raise
                await ctx.emit(self.rejected, i)


class Collect(wf.Routine):
    """Records what it receives in ``ctx.state["seen"]``; yields to the loop per item."""

    inp = wf.Slot()
    seen = wf.Event()

    @inp.handler
    async def take(self, item: Any, ctx: wf.Context) -> None:
        ctx.state.setdefault("seen", []).append(item)
        if getattr(self, "slow", False):
            await asyncio.sleep(0)

    async def on_end(self, ctx: wf.Context) -> None:
        await ctx.emit(self.seen, ctx.state.get("seen", []))


class Forward(wf.Routine):
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def fwd(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


class SyncForward(wf.Routine):
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    def fwd(self, item: Any, ctx: wf.Context) -> None:
        ctx.emit(self.out, item)


class Double(wf.Routine):
    """Emits twice what it takes; keeps the last in ``ctx.state["last"]``."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def double(self, n: Any, ctx: wf.Context) -> None:
        ctx.state["last"] = n
        await ctx.emit(self.out, n * 2)


class Boom(wf.Routine):
    """Fails every call; the default policy (``fail_job``) fails the job."""

    inp = wf.Slot()

    @inp.handler
    async def take(self, item: Any, ctx: wf.Context) -> None:
        raise ValueError(f"no {item}")


def burst_flow(capacity: int, overflow: str, *, catch: bool = False, slow: bool = True) -> wf.Flow:
    flow = wf.Flow(f"burst-{overflow}")
    flow.add("src", Burst(catch=catch))
    flow.add("dst", Collect(slow=slow))
    flow.connect("src.out", "dst.inp")
    flow.slot("dst.inp", capacity=capacity, overflow=overflow)
    flow.output("dst.seen")
    flow.output("src.rejected")
    return flow
