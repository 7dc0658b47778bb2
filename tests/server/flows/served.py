"""Flows the server tests serve (``--flows tests.server.flows.served``): every ``wf.Flow``
at the top level of this module is loaded."""

from __future__ import annotations

from typing import Any

import weirflow as wf

STREAM_CAPACITY = 5


class Forward(wf.Routine):
    """Emits every item as it is."""

    items = wf.Slot()
    out = wf.Event()

    @items.handler
    async def forward(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


class Gather(wf.Routine):
    """Collects its items; emits them as one list at the end."""

    items = wf.Slot()
    all = wf.Event()

    @items.handler
    async def gather(self, item: Any, ctx: wf.Context) -> None:
        ctx.state.setdefault("seen", []).append(item)

    async def on_end(self, ctx: wf.Context) -> None:
        await ctx.emit(self.all, ctx.state.get("seen", []))


class Picky(wf.Routine):
    """Refuses the item ``"bad"`` (dead-lettered); emits non-JSON values for ``"odd"``."""

    items = wf.Slot()
    out = wf.Event()
    on_error = wf.ErrorPolicy(then="dead_letter")

    @items.handler
    async def check(self, item: Any, ctx: wf.Context) -> None:
        if item == "bad":
            raise ValueError("bad item")
        if item == "odd":
            for value in ({1, 2}, float("nan"), b"\x00", object(), {(1, 2): "tuple key"}, {"ok": [1.5]}):
                await ctx.emit(self.out, value)
            return
        await ctx.emit(self.out, item)


stream = wf.Flow("stream")
stream.add("clean", Forward()).add("sink", Gather())
stream.connect("clean.out", "sink.items")
stream.slot("clean.items", capacity=STREAM_CAPACITY)
stream.output("clean.out")
stream.output("sink.all")

picky = wf.Flow("picky")
picky.add("check", Picky())
picky.output("check.out")
