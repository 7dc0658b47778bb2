"""The flows under measurement: a 5-routine chain (async or thread-pool handlers) and a
1 -> 4 -> join -> sink fan-out. Every slot has capacity ``CAPACITY``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import weirflow as wf

CAPACITY = 1000
STAGES = 5  # routines in a chain: STAGES - 1 forwarders, then a sink
FAN = 4  # branches of the fan-out


class Forward(wf.Routine):
    inp = wf.Slot(capacity=CAPACITY)
    out = wf.Event()

    @inp.handler
    async def forward(self, item: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, item)


class Sink(wf.Routine):
    inp = wf.Slot(capacity=CAPACITY)

    @inp.handler
    async def take(self, item: Any, ctx: wf.Context) -> None:
        pass


class ThreadForward(wf.Routine):
    """Plain ``def`` handler: runs in the engine's thread pool, ``ctx.emit`` blocks."""

    inp = wf.Slot(capacity=CAPACITY)
    out = wf.Event()

    @inp.handler
    def forward(self, item: Any, ctx: wf.Context) -> None:
        ctx.emit(self.out, item)


class ThreadSink(wf.Routine):
    inp = wf.Slot(capacity=CAPACITY)

    @inp.handler
    def take(self, item: Any, ctx: wf.Context) -> None:
        pass


class NotifySink(wf.Routine):
    """Calls ``notify(item)`` (given as configuration) for every item it takes."""

    inp = wf.Slot(capacity=CAPACITY)
    notify: Callable[[Any], None]

    @inp.handler
    async def take(self, item: Any, ctx: wf.Context) -> None:
        self.notify(item)


class Join4(wf.Routine):
    a = wf.Slot(capacity=CAPACITY)
    b = wf.Slot(capacity=CAPACITY)
    c = wf.Slot(capacity=CAPACITY)
    d = wf.Slot(capacity=CAPACITY)
    out = wf.Event()

    @wf.join(a, b, c, d)
    async def combine(self, a: Any, b: Any, c: Any, d: Any, ctx: wf.Context) -> None:
        await ctx.emit(self.out, a)


def chain(threaded: bool = False, sink: wf.Routine | None = None, stages: int = STAGES) -> wf.Flow:
    """``r0 -> r1 -> r2 -> r3 -> r4``; items enter at ``r0.inp``, ``r4`` is the sink."""
    flow = wf.Flow("bench-chain-threads" if threaded else "bench-chain")
    for i in range(stages - 1):
        flow.add(f"r{i}", ThreadForward() if threaded else Forward())
    last = stages - 1
    flow.add(f"r{last}", sink or (ThreadSink() if threaded else Sink()))
    for i in range(last):
        flow.connect(f"r{i}.out", f"r{i + 1}.inp")
    flow.validate()
    return flow


def fanout() -> wf.Flow:
    """``src`` feeds four forwarders whose outputs meet in one ``Join4``, then a sink."""
    flow = wf.Flow("bench-fanout")
    flow.add("src", Forward())
    flow.add("join", Join4())
    flow.add("sink", Sink())
    for i, slot in zip(range(FAN), "abcd", strict=True):
        flow.add(f"w{i}", Forward())
        flow.connect("src.out", f"w{i}.inp")
        flow.connect(f"w{i}.out", f"join.{slot}")
    flow.connect("join.out", "sink.inp")
    flow.validate()
    return flow
