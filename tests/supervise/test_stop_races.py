"""A stop or a shutdown that arrives while a child is being started (a cold start, a
restart's launch) ends it: it neither hangs nor leaves the child behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import psutil
import pytest

import weirflow as wf
from weirflow.supervise.child import ChildProcess

Make = Callable[..., AbstractAsyncContextManager[wf.Supervisor]]


_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _existing_children() -> None:
    """Processes this test run started before the test (a session's Redis or PostgreSQL
    server): not the supervisor's, so not counted."""
    _BEFORE.clear()
    _BEFORE.update(p.pid for p in psutil.Process().children(recursive=True))


def descendants() -> list[psutil.Process]:
    """The test process's live descendants started during this test (the supervisor's)."""
    alive = []
    for p in psutil.Process().children(recursive=True):
        if p.pid in _BEFORE:
            continue
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline()):
                alive.append(p)
        except psutil.NoSuchProcess:
            continue
    return alive


def hook_take(sup: wf.Supervisor) -> asyncio.Event:
    """An event set when the pool's ``take`` is entered (the take itself is the real one)."""
    pool = sup.pool
    assert pool is not None
    real = pool.take
    reached = asyncio.Event()

    async def take() -> ChildProcess:
        reached.set()
        return await real()

    pool.take = take  # type: ignore[method-assign]
    return reached


@pytest.mark.parametrize("how", ["stop", "close"])
async def test_a_stop_during_a_restarts_launch_ends_the_new_child(supervisor: Make, how: str) -> None:
    async with supervisor(warm=0, backoff_initial_s=0.01, backoff_max_s=0.02) as sup:
        p = await sup.start("crash", {}, name="c")
        reached = hook_take(sup)  # the pipeline still holds its dead child meanwhile
        # the child exits 3 on it (the send may or may not have been answered first): a restart
        with contextlib.suppress(wf.PipelineStateError):
            await sup.send(p.id, "c.input", "boom", timeout_s=5)
        await asyncio.wait_for(reached.wait(), 30)
        assert sup.get(p.id).state == "restarting"
        if how == "stop":
            info = await asyncio.wait_for(sup.stop(p.id, grace_s=1.0), 10)
            assert info.state == "stopped"
        else:
            await asyncio.wait_for(sup.close(grace_s=1.0), 10)
            assert sup.get(p.id).state == "stopped"
        assert sup.get(p.id).pid is None
        _, alive = psutil.wait_procs(descendants(), timeout=5)
        assert alive == []


async def test_closing_during_a_cold_start_leaves_no_child(supervisor: Make) -> None:
    async with supervisor(warm=0) as sup:
        reached = hook_take(sup)
        start = asyncio.ensure_future(sup.start("echo", {"echo.input": [1]}, name="x"))
        await asyncio.wait_for(reached.wait(), 10)
        assert descendants()  # the take went on into the spawn before it let anyone run
        await asyncio.wait_for(sup.close(grace_s=1.0), 10)
        with pytest.raises(wf.PipelineStateError):
            await start
        _, alive = psutil.wait_procs(descendants(), timeout=5)
        assert alive == []
