"""The ``chain_gen`` topology on routilux 1.1.0 (the system weirflow replaces), and on weirflow.

``chain_gen``: a generator routine takes one trigger ``n`` and emits ``n`` items one
by one; three forwarders pass each on; a sink counts them. Five routines, all plain
``def`` code, every slot with routilux's default capacity of 1000. It is built with
routilux's own API as its documentation shows (``Routine`` with ``add_slot``,
``add_event``, an activation policy that consumes what is new, ``set_logic``;
``Flow.add_routine``/``connect``; ``Runtime.post``), and timed from the post until the
sink has counted ``n`` (a ``threading.Event``, so no polling on our side; routilux's
own loop polls its queue every 0.1 s when idle).

routilux is installed only in the benchmark's own venv (``routilux==1.1.0
serilux==0.3.1``): without it ``available()`` is false and the pair is skipped.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import weirflow as wf

FORWARDERS = 3


def available() -> bool:
    try:
        import routilux  # noqa: F401
    except ImportError:
        return False
    return True


def routilux_seconds(n: int) -> float:
    """Seconds for ``n`` items through ``chain_gen`` on routilux."""
    from routilux.core import Flow, Routine, Runtime
    from routilux.core.registry import FlowRegistry

    done = threading.Event()
    count = [0]

    def consume_new(name: str) -> Any:
        def policy(slots: dict[str, Any], worker_state: Any) -> tuple[bool, dict[str, Any], str]:
            slot = slots[name]
            if slot.get_unconsumed_count():
                return True, {name: slot.consume_all_new()}, "slot_activated"
            return False, {}, "no_new_data"

        return policy

    class Gen(Routine):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.add_slot("trigger")
            self.add_event("output")
            self.set_activation_policy(consume_new("trigger"))
            self.set_logic(self.generate)

        def generate(self, trigger: list[Any], worker_state: Any = None, **_: Any) -> None:
            for data in trigger:
                for i in range(data["n"]):
                    self.emit("output", worker_state=worker_state, value=i)

    class Forward(Routine):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.add_slot("input")
            self.add_event("output")
            self.set_activation_policy(consume_new("input"))
            self.set_logic(self.forward)

        def forward(self, items: list[Any], worker_state: Any = None, **_: Any) -> None:
            for data in items:
                self.emit("output", worker_state=worker_state, value=data["value"])

    class Sink(Routine):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.add_slot("input")
            self.set_activation_policy(consume_new("input"))
            self.set_logic(self.take)

        def take(self, items: list[Any], **_: Any) -> None:
            count[0] += len(items)
            if count[0] >= n:
                done.set()

    flow = Flow(flow_id=f"chain_gen_{time.monotonic_ns()}")
    flow.add_routine(Gen(), "gen")
    names = [f"f{i}" for i in range(FORWARDERS)]
    for name in names:
        flow.add_routine(Forward(), name)
    flow.add_routine(Sink(), "sink")
    chain = ["gen", *names, "sink"]
    for a, b in itertools.pairwise(chain):
        flow.connect(a, "output", b, "input")
    FlowRegistry.get_instance().register(flow)
    runtime = Runtime(thread_pool_size=10)
    try:
        t0 = time.perf_counter()
        runtime.post(flow.flow_id, "gen", "trigger", {"n": n})
        if not done.wait(timeout=600):
            raise RuntimeError(f"routilux: {count[0]} of {n} items arrived")
        dt = time.perf_counter() - t0
    finally:
        runtime.shutdown(wait=False)
    if count[0] != n:
        raise RuntimeError(f"routilux: {count[0]} of {n} items arrived")
    return dt


class Gen(wf.Routine):
    trigger = wf.Slot()
    output = wf.Event()

    @trigger.handler
    def generate(self, n: int, ctx: wf.Context) -> None:
        for i in range(n):
            ctx.emit(self.output, i)


class Forward(wf.Routine):
    input = wf.Slot()
    output = wf.Event()

    @input.handler
    def forward(self, item: Any, ctx: wf.Context) -> None:
        ctx.emit(self.output, item)


class Sink(wf.Routine):
    input = wf.Slot()

    @input.handler
    def take(self, item: Any, ctx: wf.Context) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1


def chain_gen() -> wf.Flow:
    flow = wf.Flow("chain_gen")
    flow.add("gen", Gen())
    names = [f"f{i}" for i in range(FORWARDERS)]
    for name in names:
        flow.add(name, Forward())
    flow.add("sink", Sink())
    chain = ["gen", *names, "sink"]
    flow.connect("gen.output", f"{chain[1]}.input")
    for a, b in itertools.pairwise(chain[1:]):
        flow.connect(f"{a}.output", f"{b}.input")
    return flow


async def weirflow_seconds(n: int) -> float:
    """Seconds for ``n`` items through ``chain_gen`` on weirflow (``def`` handlers)."""
    flow = chain_gen()
    async with wf.Engine() as engine:
        t0 = time.perf_counter()
        job = await engine.start(flow, {"gen.trigger": [n]})
        result = await job.wait()
        dt = time.perf_counter() - t0
        got = job.routine_state("sink").get("n", 0)
    if result.status is not wf.JobStatus.COMPLETED or got != n:
        raise RuntimeError(f"weirflow chain_gen: {result.status.value}, {got} of {n} items")
    return dt
