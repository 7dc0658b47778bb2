"""Finished pipelines are removable and bounded (real pipeline processes)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

import weirflow as wf

Make = Callable[..., AbstractAsyncContextManager[wf.Supervisor]]


async def test_forget_removes_only_a_finished_pipeline(supervisor: Make) -> None:
    async with supervisor(warm=0) as sup:
        p = await sup.start("echo")
        with pytest.raises(wf.PipelineStateError):
            sup.forget(p.id)
        assert sup.get(p.id).state == "running"
        await sup.stop(p.id, grace_s=0.5)
        assert sup.forget(p.id).state == "stopped"
        with pytest.raises(wf.PipelineNotFound):
            sup.get(p.id)
        assert sup.pipelines() == []


async def test_only_the_newest_finished_pipelines_are_kept(supervisor: Make) -> None:
    async with supervisor(warm=2, keep_finished=1) as sup:
        ids = [(await sup.start("echo")).id for _ in range(2)]
        for pid in ids:
            await sup.stop(pid, grace_s=0.5)
        assert [p.id for p in sup.pipelines()] == ids  # evicted when the next one starts
        live = await sup.start("echo")
        assert [p.id for p in sup.pipelines()] == [*ids[1:], live.id]
        with pytest.raises(wf.PipelineNotFound):
            sup.get(ids[0])
        assert sup.get(live.id).state == "running"  # a live pipeline is never evicted
