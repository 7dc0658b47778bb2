"""Flows the debugger tests serve (``--flows tests.server.flows.debugged``)."""

from __future__ import annotations

from typing import Any

import weirflow as wf
from tests.server.flows.served import Forward, Gather

INTAKE_CAPACITY = 5


class Enrich(wf.Routine):
    """Marks every order as checked; counts them in its state."""

    items = wf.Slot()
    out = wf.Event()

    @items.handler
    async def enrich(self, order: dict[str, Any], ctx: wf.Context) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        await ctx.emit(self.out, {**order, "checked": True})


orders = wf.Flow("orders")
orders.add("intake", Forward()).add("enrich", Enrich()).add("sink", Gather())
orders.connect("intake.out", "enrich.items")
orders.connect("enrich.out", "sink.items")
orders.slot("intake.items", capacity=INTAKE_CAPACITY)
orders.output("enrich.out")
orders.output("sink.all")
