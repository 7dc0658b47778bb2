"""Flows the web UI tests serve (``--flows tests.server.ui.flows``).

``stream`` and ``picky`` are the server tests' (imported, so loaded here too); ``gated``
is a durable chain whose routine ``b`` fails while the file named by the item's
``gate`` is missing (so a retry after creating it completes); ``wide`` has 50
routines, for a page that must stay usable with a big flow.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import weirflow as wf
from tests.server.flows.served import picky, stream

__all__ = ["gated", "picky", "stream", "wide"]

WIDE_ROUTINES = 50


class Gate(wf.Routine):
    """Reports progress, sleeps ``sleep_s``; ``b`` fails while ``gate`` does not exist."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        ctx.progress(30, f"{ctx.routine} started")
        if item.get("sleep_s"):
            await asyncio.sleep(item["sleep_s"])  # a step that takes time, so it can be watched
        if ctx.routine == "b" and item.get("gate") and not Path(item["gate"]).exists():
            raise ValueError(f"gate {item['gate']} is closed")
        ctx.progress(100, f"{ctx.routine} done")
        await ctx.emit(self.out, item)


class Pass(wf.Routine):
    items = wf.Slot()
    out = wf.Event()

    @items.handler
    async def forward(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


gated = wf.Flow("gated")
for _name in "abc":
    gated.add(_name, Gate())
gated.connect("a.out", "b.item")
gated.connect("b.out", "c.item")
gated.output("c.out")

wide = wf.Flow("wide")
for _i in range(WIDE_ROUTINES):
    wide.add(f"r{_i:02d}", Pass())
for _i in range(1, WIDE_ROUTINES):
    # a tree: each routine feeds two others, so the layout has depth and breadth
    wide.connect(f"r{(_i - 1) // 2:02d}.out", f"r{_i:02d}.items")
wide.output(f"r{WIDE_ROUTINES - 1:02d}.out")
