"""Flows the durable tests (and ``weirflow worker --flows tests.durable.flows``) run.

Every module-level ``wf.Flow`` here is loaded by ``--flows tests.durable.flows``.
Behaviour comes from the job's inputs, so worker processes need no shared state:
``{"a.item": {"sleep_s": 0.5, "fail": true, "log": "/tmp/x"}}``. With ``log``,
every step appends ``job:routine:attempt`` to that file (the crash tests count them);
with ``times``, ``start:job:routine:attempt:pid:t`` and ``end:job:routine:attempt:pid:t0:t1``
instead, and with ``stops`` also ``stop:job:routine:attempt:pid:t0:t1`` when an async
step is cancelled. ``sleeps`` gives a routine its own sleep (``{"b": 2.0}``), ``first_sleep_s``
the first attempt of every step (with ``first_sleep_once: PATH``, only the first call,
whatever its attempt: a step killed before its start was committed runs as attempt 1
again). ``kill`` makes the worker process
``kill -9`` itself once (the ``once`` file marks it done) in ``routine`` at ``when``
(``start`` or ``after_emit``), ``after_s`` later: a crash at an exact point.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from pathlib import Path
from typing import Any

import weirflow as wf


def _log(item: dict[str, Any], ctx: wf.Context) -> None:
    if item.get("log"):
        with Path(item["log"]).open("a", encoding="utf-8") as f:
            if item.get("times"):
                f.write(f"start:{ctx.job_id}:{ctx.routine}:{ctx.attempt}:{os.getpid()}:{time.time()}\n")
            else:
                f.write(f"{ctx.job_id}:{ctx.routine}:{ctx.attempt}\n")


def _sleep_s(item: dict[str, Any], ctx: wf.Context) -> float:
    once = item.get("first_sleep_once")
    if once:  # the first call to get here sleeps first_sleep_s, whatever its attempt
        if not Path(once).exists():
            Path(once).touch()
            return float(item["first_sleep_s"])
    elif "first_sleep_s" in item and ctx.attempt == 1:
        return float(item["first_sleep_s"])
    sleeps = item.get("sleeps") or {}
    return float(sleeps.get(ctx.routine, item.get("sleep_s") or 0))


async def _maybe_die(item: dict[str, Any], ctx: wf.Context, when: str) -> None:
    kill = item.get("kill")
    if not kill or kill["routine"] != ctx.routine or kill["when"] != when:
        return
    marker = Path(kill["once"])
    if marker.exists():
        return
    await asyncio.sleep(kill.get("after_s", 0))  # (lets the journal commit what came before)
    marker.write_text(f"{ctx.routine}:{when}")
    os.kill(os.getpid(), signal.SIGKILL)


def _log_end(item: dict[str, Any], ctx: wf.Context, t0: float) -> None:
    if item.get("log") and item.get("times"):
        with Path(item["log"]).open("a", encoding="utf-8") as f:
            f.write(f"end:{ctx.job_id}:{ctx.routine}:{ctx.attempt}:{os.getpid()}:{t0}:{time.time()}\n")


def _log_stop(item: dict[str, Any], ctx: wf.Context, t0: float) -> None:
    if item.get("log") and item.get("stops"):
        with Path(item["log"]).open("a", encoding="utf-8") as f:
            f.write(f"stop:{ctx.job_id}:{ctx.routine}:{ctx.attempt}:{os.getpid()}:{t0}:{time.time()}\n")


class Stage(wf.Routine):
    """Reports progress in steps, may sleep, may fail; passes its item on."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        t0 = time.time()
        _log(item, ctx)
        await _maybe_die(item, ctx, "start")
        ctx.progress(40, f"{ctx.routine} working")
        if sleep_s := _sleep_s(item, ctx):
            try:
                await asyncio.sleep(sleep_s)
            except asyncio.CancelledError:
                _log_stop(item, ctx, t0)
                raise
        if item.get("fail") is True or item.get("fail") == ctx.routine:
            raise ValueError(f"{ctx.routine} failed on purpose")
        ctx.progress(90, f"{ctx.routine} nearly done")
        await ctx.emit(self.out, item)
        _log_end(item, ctx, t0)
        await _maybe_die(item, ctx, "after_emit")


class BlockingStage(wf.Routine):
    """``Stage`` with a plain ``def`` handler (run in the engine's threads): its sleep
    blocks the thread, which nothing can cancel."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        t0 = time.time()
        _log(item, ctx)
        time.sleep(_sleep_s(item, ctx))
        _log_end(item, ctx, t0)
        ctx.emit(self.out, item)


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

blocking = wf.Flow("blocking")
blocking.add("a", BlockingStage())
blocking.output("a.out")


class ProcessStage(BlockingStage):
    """``BlockingStage`` run in the engine's child processes (``executor = "process"``):
    its log lines carry the pid of that child."""

    executor = "process"


in_process = wf.Flow("in_process")
in_process.add("a", ProcessStage())
in_process.output("a.out")


# per job, in this process: the item s1 emitted first has been taken by s2
_taken: dict[str, asyncio.Event] = {}


def _taken_event(job_id: str) -> asyncio.Event:
    return _taken.setdefault(job_id, asyncio.Event())


class EmitWorkEmit(wf.Routine):
    """s1 of the crash-after-emit scenario: emits its item, works, emits a second one.

    With ``"hang": PATH``, its first attempt works until s2 has taken the first item, then
    for ever (the test kills the worker there: s2's ``start`` committed, s1's ``done``
    not)."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        _log(item, ctx)
        await ctx.emit(self.out, {**item, "k": 0})
        if item.get("hang") and ctx.attempt == 1:
            await _taken_event(ctx.job_id).wait()
            await asyncio.Event().wait()  # the work the kill interrupts
        await ctx.emit(self.out, {**item, "k": 1, "hang": None})


class TakeAndHang(wf.Routine):
    """s2: passes its item on; the first time it sees an item with ``"hang": PATH`` (no
    file at PATH yet: it makes it) it says so to s1 and works for ever (the kill
    interrupts it too)."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        _log(item, ctx)
        if item.get("hang") and not Path(item["hang"]).exists():
            Path(item["hang"]).touch()
            _taken_event(ctx.job_id).set()
            await asyncio.Event().wait()
        await ctx.emit(self.out, item)


emit_twice = wf.Flow("emit_twice")
emit_twice.add("s1", EmitWorkEmit()).add("s2", TakeAndHang()).add("s3", Stage())
emit_twice.connect("s1.out", "s2.item").connect("s2.out", "s3.item")
emit_twice.output("s3.out")


@wf.routine
async def noop_fn(item: Any) -> Any:
    return item


noop = wf.Flow("noop")
noop.add("n", noop_fn)
noop.output("n.output")


class Hog(wf.Routine):
    """Holds ``mb`` MiB more resident memory (every page touched, 16 MiB at a time) for
    ``hold_s``, then passes its item on; with ``once: PATH`` only the first call to get here
    allocates and holds (the next ones pass the item on at once)."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        once = item.get("once")
        held = None
        if not once or not Path(once).exists():
            if once:
                Path(once).touch()
            held = []
            for _ in range(int(item["mb"]) // 16):  # grows 16 MiB at a time: the loop goes on
                block = bytearray(16 * 1024 * 1024)
                block[::4096] = b"x" * len(block[::4096])
                held.append(block)
                await asyncio.sleep(0)
            await asyncio.sleep(float(item.get("hold_s", 0)))
        del held
        await ctx.emit(self.out, item)


hog = wf.Flow("hog")
hog.add("a", Hog())
hog.output("a.out")


class Tally(wf.Routine):
    """Appends ``PID K`` to the file ``calls`` as each call starts (before it does anything
    else: which process started the call of which item), sleeps ``sleep_s``, emits ``k``."""

    item = wf.Slot()
    out = wf.Event()

    @item.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        with Path(item["calls"]).open("a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {item['k']}\n")
        await asyncio.sleep(float(item.get("sleep_s", 0)))
        await ctx.emit(self.out, item["k"])


tally = wf.Flow("tally")
tally.add("t", Tally())
tally.output("t.out")
