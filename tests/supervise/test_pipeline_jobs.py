"""What a pipeline's job may do and what it says when it ends: a process-executor routine
runs in it, and the job's own error is the pipeline's reason."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import weirflow as wf

Make = Callable[..., AbstractAsyncContextManager[wf.Supervisor]]


async def test_a_pipeline_runs_a_process_executor_routine(supervisor: Make) -> None:
    async with supervisor(warm=0) as sup:
        p = await sup.start("square", {"sq.inp": [3]}, restart="temporary")
        assert await sup.results(p.id, wait_s=20) == [9]
        await sup.send(p.id, "sq.inp", 4)
        assert await sup.results(p.id, wait_s=20) == [16]
        assert sup.get(p.id).state == "running"


async def test_a_failed_jobs_error_is_the_pipelines_reason(supervisor: Make) -> None:
    async with supervisor(warm=0) as sup:
        p = await sup.start("refuse", {}, restart="temporary")
        await sup.send(p.id, "r.input", "x")
        info = await sup.wait_state(p.id, "stopped", timeout_s=20)
        assert info.reason is not None
        assert "refused item 'x'" in info.reason
        assert "restart is temporary" in info.reason
