"""Flows the stepping tests debug: chains of capacity-1 slots (one routine a plain
``def``, so a step also crosses a thread) and a join that waits for its other slot."""

from __future__ import annotations

from typing import Any

import weirflow as wf


class Forward(wf.Routine):
    inp = wf.Slot(capacity=1)
    out = wf.Event()

    @inp.handler
    async def forward(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


class ForwardInThread(wf.Routine):
    inp = wf.Slot(capacity=1)
    out = wf.Event()

    @inp.handler
    def forward(self, item: Any, ctx: wf.Context) -> None:
        ctx.emit(self.out, item)


class Pair(wf.Routine):
    x = wf.Slot(capacity=1)
    y = wf.Slot(capacity=1)
    out = wf.Event()

    @wf.join(x, y)
    async def pair(self, a: Any, b: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, [a, b])


def chain(name: str = "chain", *, thread: bool = True) -> wf.Flow:
    """``a -> b -> c``, every slot of capacity 1; ``b`` runs in a thread if ``thread``."""
    f = wf.Flow(name)
    f.add("a", Forward()).add("b", ForwardInThread() if thread else Forward()).add("c", Forward())
    f.connect("a.out", "b.inp").connect("b.out", "c.inp")
    f.output("c.out")
    return f


def joined() -> wf.Flow:
    """``a -> j.x`` and ``b -> j.y``: ``j`` is called once an item waits in each."""
    f = wf.Flow("joined")
    f.add("a", Forward()).add("b", Forward()).add("j", Pair())
    f.connect("a.out", "j.x").connect("b.out", "j.y")
    f.output("j.out")
    return f


#: served over HTTP by the debugger route tests
chained = chain()
chained_async = chain("chain_async", thread=False)
paired = joined()
