"""Flows the supervisor tests run as pipelines (imported by the supervisor and its children)."""

from __future__ import annotations

from typing import Any

import weirflow as wf


@wf.routine
def echo(item: Any) -> Any:
    return item


class Ticker(wf.Routine):
    """Given ``n``, emits 0..n-1 (``n`` < 0: for ever), as fast as it is let."""

    start = wf.Slot()
    ticks = wf.Event()

    @start.handler
    async def run(self, n: int, ctx: wf.Context) -> None:
        i = 0
        while n < 0 or i < n:
            await ctx.emit(self.ticks, i)
            i += 1


class Hog(wf.Routine):
    """Holds ``mb`` more MiB of resident memory per item."""

    mb = wf.Slot()
    held = wf.Event()

    @mb.handler
    async def grow(self, mb: int, ctx: wf.Context) -> None:
        ctx.state.setdefault("blocks", []).append(b"x" * (mb * 1024 * 1024))
        await ctx.emit(self.held, mb)


echo_flow = wf.Flow("echo")
echo_flow.add("echo", echo)
echo_flow.output("echo.output")

ticker = wf.Flow("ticker")
ticker.add("src", Ticker())
ticker.output("src.ticks")

hog = wf.Flow("hog")
hog.add("hog", Hog())
hog.output("hog.held")


@wf.routine
def crasher(item: Any) -> Any:
    """Ends its whole process (exit code 3) on ``"boom"``; echoes anything else."""
    if item == "boom":
        import os

        os._exit(3)
    return item


crash = wf.Flow("crash")
crash.add("c", crasher)
crash.output("c.output")


def _square_flow() -> wf.Flow:
    # a routine run by the process executor: the pipeline's child starts processes of its own
    from tests.runtime.process_flows import Square

    flow = wf.Flow("square")
    flow.add("sq", Square())
    flow.output("sq.out")
    return flow


square = _square_flow()


@wf.routine
def refuser(item: Any) -> Any:
    """Fails the job on every item."""
    raise ValueError(f"refused item {item!r}")


refuse = wf.Flow("refuse")
refuse.add("r", refuser)
refuse.output("r.output")


class Stuck(wf.Routine):
    """Never finishes an item: its slot (room for one) stays full after the second."""

    inp = wf.Slot(capacity=1)
    out = wf.Event()

    @inp.handler
    async def hold(self, item: Any, ctx: wf.Context) -> None:
        import asyncio

        await asyncio.Event().wait()


stuck = wf.Flow("stuck")
stuck.add("s", Stuck())
stuck.output("s.out")


class Stubborn(wf.Routine):
    """Ignores SIGTERM in its process, says so (an output), and never finishes its item:
    only SIGKILL ends its pipeline's child."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def hold(self, item: Any, ctx: wf.Context) -> None:
        import asyncio
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        await ctx.emit(self.out, item)
        await asyncio.Event().wait()


stubborn = wf.Flow("stubborn")
stubborn.add("s", Stubborn())
stubborn.output("s.out")


def _mark(item: dict[str, Any], what: str) -> None:
    from pathlib import Path

    with Path(item["log"]).open("a", encoding="utf-8") as f:
        f.write(f"{what}:{item['i']}\n")


def _maybe_die(item: dict[str, Any], when: str) -> None:
    import os
    import signal
    from pathlib import Path

    if item.get("kill") == when and not Path(item["once"]).exists():
        Path(item["once"]).touch()
        os.kill(os.getpid(), signal.SIGKILL)


class Work(wf.Routine):
    """For ``{"i", "log", "kill", "once"}``: appends ``start:i`` to ``log``, emits ``i`` and
    appends ``done:i`` as its last act. With ``kill`` (once, the ``once`` file marks it),
    its process ends itself with SIGKILL ``during`` the handler (before the emit) or
    ``after_emit`` (the output is out, the handler has not returned)."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    async def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        _mark(item, "start")
        _maybe_die(item, "during")
        await ctx.emit(self.out, item["i"])
        _maybe_die(item, "after_emit")
        _mark(item, "done")


class DefWork(wf.Routine):
    """``Work`` with a plain ``def`` handler: it runs on a worker thread of the child."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    def run(self, item: dict[str, Any], ctx: wf.Context) -> None:
        _mark(item, "start")
        _maybe_die(item, "during")
        ctx.emit(self.out, item["i"])
        _maybe_die(item, "after_emit")
        _mark(item, "done")


work = wf.Flow("work")
work.add("w", Work())
work.output("w.out")

work_def = wf.Flow("work_def")
work_def.add("w", DefWork())
work_def.output("w.out")
