"""A job's end does not end a plain ``def`` call running on a thread: ``wait_calls_ended``
resolves only once every such call has returned, and an ``executor = "process"`` call is
killed with its child (dead by then). A durable worker waits for it before the job's next
attempt may start (review s19 A)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

import weirflow as wf
from tests.runtime.process_flows import Tell
from weirflow.runtime import LogJournal

#: per test: set by the handler once it runs; the test sets ``release`` to let it return
_started = threading.Event()
_release = threading.Event()
_returned = threading.Event()


class Hold(wf.Routine):
    """A plain ``def`` handler that blocks its thread until the test releases it."""

    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    def hold(self, item: Any, ctx: wf.Context) -> None:
        _started.set()
        _release.wait(60)
        _returned.set()
        ctx.emit(self.out, item)


@pytest.fixture(autouse=True)
def _fresh_events() -> Any:
    for e in (_started, _release, _returned):
        e.clear()
    yield
    _release.set()  # never leave a thread blocked behind


def _flow(routine: wf.Routine) -> wf.Flow:
    flow = wf.Flow("lingering")
    flow.add("h", routine)
    flow.output("h.out")
    return flow


async def _started_on_thread() -> None:
    assert await asyncio.to_thread(_started.wait, 30), "the handler never started"


@pytest.mark.parametrize("journal", [False, True], ids=["worker-threads", "engine-pool"])
async def test_a_cancelled_def_call_is_waited_for_until_it_returned(journal: bool) -> None:
    # without a journal the routine runs on its own worker threads (ThreadRunner); with one
    # (a durable job) each call runs in the engine's pool
    async with wf.Engine(journal=LogJournal() if journal else None) as engine:
        job = await engine.start(_flow(Hold()), {"h.inp": [1]})
        await _started_on_thread()
        result = await job.cancel()
        assert result.status is wf.JobStatus.CANCELLED
        assert job.lingering == 1
        # the thread is blocked until released: the wait cannot resolve
        assert not await job.wait_calls_ended(timeout_s=0.3)
        assert not _returned.is_set()
        _release.set()
        assert await job.wait_calls_ended(timeout_s=30)
        assert _returned.is_set(), "wait_calls_ended resolved before the handler returned"
        assert job.lingering == 0


async def test_a_job_that_ends_with_no_call_running_has_none_to_wait_for() -> None:
    async with wf.Engine(journal=LogJournal()) as engine:
        _release.set()
        job = await engine.start(_flow(Hold()), {"h.inp": [1, 2]})
        result = await job.wait(30)
        assert result.status is wf.JobStatus.COMPLETED
        assert await job.wait_calls_ended(timeout_s=30)
        assert job.lingering == 0


def _read_pid(fifo: Path) -> int:
    with open(fifo) as f:  # blocks until the handler, inside its call, writes its pid
        return int(f.readline())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("journal", [False, True], ids=["batches", "one-call-path"])
async def test_a_cancelled_process_call_is_killed_with_its_child(tmp_path: Path, journal: bool) -> None:
    # Tell's handler writes its pid, then waits in its child until killed: only the job's
    # end can stop it (without a journal: ProcessRunner's batches; with one: ProcessCallRunner)
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    async with wf.Engine(journal=LogJournal() if journal else None, max_processes=1) as engine:
        job = await engine.start(_flow(Tell(fifo=str(fifo))), {"h.inp": [1]})
        pid = await asyncio.wait_for(asyncio.to_thread(_read_pid, fifo), 60)
        child = psutil.Process(pid)
        await job.cancel()
        assert await job.wait_calls_ended(timeout_s=60), "the child's call still runs"
        assert not psutil.pid_exists(pid) or child.status() == psutil.STATUS_ZOMBIE, (
            f"the child {pid} running the cancelled call is alive"
        )
