"""A streaming job: items are sent while it runs, it is paused and resumed, then closed.

    python -m examples.streaming

``keep_open=True`` keeps the job alive between sends. While it is paused, sends
still queue (up to the slot's capacity, then they would wait); ``resume()``
reports every slot that is full or near full.
"""

from __future__ import annotations

import asyncio

import weirflow as wf

CAPACITY = 8


class Clean(wf.Routine):
    """Drops readings outside the sensor's range."""

    readings = wf.Slot(capacity=CAPACITY)
    valid = wf.Event()

    @readings.handler
    async def check(self, reading: float, ctx: wf.Context) -> None:
        if -40.0 <= reading <= 85.0:
            await ctx.emit(self.valid, reading)


class Mean(wf.Routine):
    readings = wf.Slot()
    mean = wf.Event()

    @readings.handler
    async def add(self, reading: float, ctx: wf.Context) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        ctx.state["sum"] = ctx.state.get("sum", 0.0) + reading

    async def on_end(self, ctx: wf.Context) -> None:
        n = ctx.state.get("n", 0)
        await ctx.emit(self.mean, round(ctx.state.get("sum", 0.0) / n, 3) if n else None)


def build_flow() -> wf.Flow:
    flow = wf.Flow("sensor")
    flow.add("clean", Clean())
    flow.add("mean", Mean())
    flow.connect("clean.valid", "mean.readings")
    flow.output("clean.valid")
    flow.output("mean.mean")
    flow.validate()
    return flow


async def stream() -> wf.JobResult:
    async with wf.Engine() as engine:
        job = await engine.start(build_flow(), keep_open=True)
        for reading in (21.5, 22.0, 999.0, 21.0):
            await job.send("clean.readings", reading, timeout_s=5)

        point = await job.pause(reason="recalibrating")
        queued = point.queues["clean.readings"].size
        print(f"paused ({point.reason}): {queued} reading(s) queued")
        # While paused nothing is taken from the slot: fill it to capacity, no more
        # (one more send would wait for room until resume).
        for i in range(CAPACITY - queued):
            await job.send("clean.readings", 20.0 + i, timeout_s=5)

        report = await job.resume()
        print(f"resumed after {report.paused_s:.3f}s")
        for warning in report.warnings:
            print(f"warning: {warning}")

        await job.send("clean.readings", -100.0, timeout_s=5)
        await job.close_input()
        return await job.wait(timeout_s=10)


def main() -> None:
    result = asyncio.run(stream())
    print(f"status: {result.status.value}")
    print(f"valid readings: {len(result.outputs['clean.valid'])}")
    print(f"mean: {result.outputs['mean.mean'][0]}")


if __name__ == "__main__":
    main()
