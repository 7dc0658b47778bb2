"""``Hooks.ends_now``: a hook that must hear of every handler end of a plain ``def``
routine before its worker thread takes the next item (a pipeline child's
acknowledgements, ``weirflow.supervise.pipeline_child``)."""

from __future__ import annotations

from typing import Any

import weirflow as wf
from tests.conftest import assert_settled


class Ends(wf.Hooks):
    def __init__(self, *, now: bool) -> None:
        self.ends_now = now
        self.seen: list[Any] = []

    def watches(self, point: str, target: str) -> bool:
        return False

    def on_handler_end(
        self, job: wf.Job, routine: str, item: Any, error: BaseException | None, duration_s: float
    ) -> None:
        self.seen.append(item)


def flow_seeing(hook: Ends, concurrency: int = 1) -> wf.Flow:
    class Look(wf.Routine):
        """Emits how many ends the hook had seen when its call for ``item`` started."""

        inp = wf.Slot()
        out = wf.Event()

        @inp.handler
        def look(self, item: int, ctx: wf.Context) -> None:
            ctx.emit(self.out, (item, len(hook.seen)))

    Look.concurrency = concurrency
    flow = wf.Flow("look")
    flow.add("l", Look())
    flow.output("l.out")
    return flow


async def test_a_hook_with_ends_now_hears_of_each_def_call_before_the_next_starts() -> None:
    hook = Ends(now=True)
    async with wf.Engine() as engine:
        # queued before the job starts: one worker takes all 300 in a row
        job = await engine.start(flow_seeing(hook), {"l.inp": list(range(300))}, hooks=[hook])
        result = await job.wait(timeout_s=30)
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert_settled(result)
    seen_at_start = dict(result.outputs["l.out"])
    assert sorted(hook.seen) == list(range(300))
    assert seen_at_start == {i: i for i in range(300)}  # every earlier end was told first


async def test_ends_now_with_concurrent_workers_tells_every_end_once() -> None:
    hook = Ends(now=True)
    async with wf.Engine() as engine:
        job = await engine.start(flow_seeing(hook, concurrency=4), {"l.inp": list(range(200))}, hooks=[hook])
        result = await job.wait(timeout_s=30)
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert sorted(hook.seen) == list(range(200))
