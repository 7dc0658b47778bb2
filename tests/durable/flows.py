"""Flows the durable tests (and ``weirflow worker --flows tests.durable.flows``) run.

Every module-level ``wf.Flow`` here is loaded by ``--flows tests.durable.flows``.
Behaviour comes from the job's inputs, so worker processes need no shared state:
``{"a.item": {"sleep_s": 0.5, "fail": true, "log": "/tmp/x"}}``. With ``log``,
every step appends ``routine:attempt`` to that file (the crash tests count them).
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import weirflow as wf


def _log(item: dict[str, Any], ctx: wf.Context) -> None:
    if item.get("log"):
        with Path(item["log"]).open("a", encoding="utf-8") as f:
            f.write(f"{ctx.job_id}:{ctx.routine}:{ctx.attempt}\n")


class Stage(wf.Routine):
    """Reports progress in steps, may sleep, may fail; passes its item on."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        _log(item, ctx)
        ctx.progress(40, f"{ctx.routine} working")
        if item.get("sleep_s"):
            await asyncio.sleep(item["sleep_s"])
        if item.get("fail") is True or item.get("fail") == ctx.routine:
            raise ValueError(f"{ctx.routine} failed on purpose")
        ctx.progress(90, f"{ctx.routine} nearly done")
        await ctx.emit(self.out, item)


def _chain(name: str, stages: int) -> wf.Flow:
    flow = wf.Flow(name)
    names = [chr(ord("a") + i) for i in range(stages)]
    for n in names:
        flow.add(n, Stage())
    for src, dst in itertools.pairwise(names):
        flow.connect(f"{src}.out", f"{dst}.item")
    flow.output(f"{names[-1]}.out")
    return flow


steps3 = _chain("steps3", 3)
one = _chain("one", 1)


@wf.routine
async def noop_fn(item: Any) -> Any:
    return item


noop = wf.Flow("noop")
noop.add("n", noop_fn)
noop.output("n.output")
