"""``wf.Supervisor`` with real child processes: pipelines, restarts, health, backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psutil
import pytest

import weirflow as wf
from tests.looplag import loop_lag
from weirflow.supervise.framing import HEADER

Make = Callable[..., AbstractAsyncContextManager[wf.Supervisor]]


async def test_a_pipeline_runs_its_job_and_its_outputs_are_consumed(supervisor: Make) -> None:
    async with supervisor() as sup:
        p = await sup.start("echo", {"echo.input": [1, 2, 3]}, name="e1")
        assert (p.name, p.flow, p.state, p.restarts) == ("e1", "echo", "running", 0)
        assert p.pid is not None and p.pid != os.getpid()
        got: list[Any] = []
        while len(got) < 3:
            got += await sup.results(p.id, max_items=10, wait_s=5)
        assert got == [1, 2, 3]
        await sup.send(p.id, "echo.input", {"x": 1})
        assert await sup.results(p.id, wait_s=5) == [{"x": 1}]
        assert [i.id for i in sup.pipelines()] == [p.id]
        stopped = await sup.stop(p.id)
        assert stopped.state == "stopped"
        assert stopped.pid is None
        assert stopped.last_exit is not None
        assert stopped.last_exit["code"] == 0
        assert not psutil.pid_exists(p.pid) or psutil.Process(p.pid).status() == psutil.STATUS_ZOMBIE


async def test_health_checks_report_round_trips_and_queues(supervisor: Make) -> None:
    async with supervisor(health_interval_s=0.2) as sup:
        p = await sup.start("echo", {"echo.input": ["a"]})
        await sup.results(p.id, wait_s=5)
        child = sup.child(p.id)
        assert child is not None
        # health checks are status commands answered by the child: wait for three of them
        for _ in range(3):
            info = await sup.wait_healthy(p.id, timeout_s=10)
        assert sup.metrics.commands["status"].count == 3
        assert info.health["failures"] == 0
        assert info.health["last_ok_at"] is not None
        assert info.health["rtt_ms"]["p50"] is not None
        assert 0 < info.health["deadline_s"] <= 0.1
        assert info.queues["echo.input"]["processed"] == 1
        assert info.rss_mb is not None and info.rss_mb > 5
        text = sup.metrics.render().decode()
        assert 'weirflow_supervise_command_duration_seconds_count{command="status"}' in text
        assert 'weirflow_pipelines{state="running"} 1.0' in text


async def test_kill_9_restarts_the_child_after_its_backoff(supervisor: Make) -> None:
    async with supervisor(warm=1, backoff_initial_s=0.3, backoff_max_s=0.3) as sup:
        p = await sup.start("echo", {"echo.input": ["first"]})
        assert await sup.results(p.id, wait_s=5) == ["first"]
        restarting = asyncio.ensure_future(sup.wait_state(p.id, "restarting", timeout_s=5))
        t0 = time.monotonic()
        os.kill(p.pid or -1, signal.SIGKILL)
        await restarting
        info = await sup.wait_state(p.id, "running", timeout_s=20)
        took_s = time.monotonic() - t0
        assert took_s >= 0.3 * 0.8  # the backoff, less its jitter, was waited
        assert info.restarts == 1
        assert info.last_exit is not None
        assert info.last_exit["signal"] == "SIGKILL"
        assert info.last_exit["at"] >= time.time() - took_s - 1
        assert info.pid not in (None, p.pid)
        # the restarted child runs the job again (its inputs fed anew) and takes sends
        assert await sup.results(p.id, wait_s=5) == ["first"]
        await sup.send(p.id, "echo.input", "second")
        assert await sup.results(p.id, wait_s=5) == ["second"]
        assert sup.metrics.restarts == {("echo", "crash"): 1}


@pytest.mark.slow
async def test_a_hung_child_is_replaced_while_the_others_stay_healthy(supervisor: Make) -> None:
    interval_s, failures = 0.5, 3
    async with supervisor(warm=1, health_interval_s=interval_s, health_failures=failures) as sup:
        ps = [await sup.start("echo", name=f"e{i}") for i in range(3)]
        for p in ps:  # every child answered a check: deadlines are measured
            await sup.wait_healthy(p.id, timeout_s=10)
        hung = ps[1]
        deadline_s = sup.get(hung.id).health["deadline_s"]
        replaced = asyncio.ensure_future(sup.wait_state(hung.id, "restarting", timeout_s=30))
        async with loop_lag() as lag:
            os.kill(hung.pid or -1, signal.SIGSTOP)
            try:
                await replaced
            finally:
                with_pid = hung.pid or -1
                if psutil.pid_exists(with_pid):
                    os.kill(with_pid, signal.SIGCONT)
        # the supervisor's own wait (the time this process could not run aside: tests/looplag.py)
        assert lag.own_s <= interval_s * failures + deadline_s + 1, (lag.elapsed_s, lag.late_s)
        info = sup.get(hung.id)
        assert info.last_exit is not None
        assert info.last_exit["reason"].startswith("unhealthy: 3 health checks failed")
        now = time.time()
        for other in (ps[0], ps[2]):
            o = sup.get(other.id)
            assert o.state == "running"
            assert o.health["failures"] == 0
            # checked on schedule the whole time: the last healthy answer is recent
            assert now - o.health["last_ok_at"] <= interval_s + o.health["deadline_s"] + 0.5 + lag.max_late_s
        # the hung child's failed checks are counted (a healthy child's check may also miss once
        # on a loaded machine and pass at the next one: 4 here once at load 8-10)
        assert sup.metrics.health_failures["echo"] >= failures
        running = await sup.wait_state(hung.id, "running", timeout_s=20)
        assert running.restarts == 1
        assert sup.metrics.restarts == {("echo", "unhealthy"): 1}


async def test_a_child_over_max_rss_is_replaced_with_the_reason(supervisor: Make) -> None:
    async with supervisor(warm=1, health_interval_s=0.3) as sup:
        p = await sup.start("hog", max_rss_mb=150)
        replaced = asyncio.ensure_future(sup.wait_state(p.id, "restarting", timeout_s=20))
        for _ in range(20):  # 20 MiB a step: the child keeps answering its checks meanwhile
            if replaced.done():
                break
            try:
                await sup.send(p.id, "hog.mb", 20)
            except wf.PipelineStateError:
                break  # replaced while this send was on its way
        await replaced
        info = await sup.wait_state(p.id, "running", timeout_s=20)
        assert info.restarts == 1
        assert info.last_exit is not None
        assert "max_rss_mb" in info.last_exit["reason"]
        assert "150" in info.last_exit["reason"]
        assert sup.metrics.restarts == {("hog", "max_rss"): 1}


async def test_a_child_over_max_rss_that_does_not_answer_is_replaced_for_its_rss(supervisor: Make) -> None:
    # a child too busy (here: stopped) to answer its health checks while its RSS is over the
    # limit is replaced for its RSS, which the supervisor reads itself (psutil), not as
    # "unhealthy" after 3 missed checks (before, the RSS was read only after an answer)
    async with supervisor(warm=1, health_interval_s=0.5, health_failures=3) as sup:
        p = await sup.start("echo", max_rss_mb=1)  # every child is over
        assert p.pid is not None
        os.kill(p.pid, signal.SIGSTOP)  # answers nothing from now on
        try:
            info = await sup.wait_state(p.id, "restarting", timeout_s=60)
        finally:
            if psutil.pid_exists(p.pid):
                os.kill(p.pid, signal.SIGCONT)
        assert info.last_exit is not None
        assert info.last_exit["reason"].startswith("max_rss_mb: "), info.last_exit["reason"]
        assert "over the limit of 1 MiB" in info.last_exit["reason"]
        assert ("echo", "max_rss") in sup.metrics.restarts
        assert ("echo", "unhealthy") not in sup.metrics.restarts


@pytest.mark.slow
async def test_past_the_restart_intensity_the_pipeline_fails_and_says_why(supervisor: Make) -> None:
    async with supervisor(warm=2, intensity=1) as sup:
        p = await sup.start("crash")
        other = await sup.start("echo")
        restarting = asyncio.ensure_future(sup.wait_state(p.id, "restarting", timeout_s=20))
        await sup.send(p.id, "c.input", "boom")
        await restarting
        await sup.wait_state(p.id, "running", timeout_s=20)  # the one restart allowed
        assert sup.get(p.id).restarts == 1
        failed = asyncio.ensure_future(sup.wait_state(p.id, "failed", timeout_s=20))
        await sup.send(p.id, "c.input", "boom")
        info = await failed
        assert info.reason is not None
        assert "intensity" in info.reason
        assert info.last_exit is not None
        assert info.last_exit["code"] == 3
        # the supervisor goes on with the others
        await sup.send(other.id, "echo.input", "ok")
        assert await sup.results(other.id, wait_s=5) == ["ok"]
        with pytest.raises(wf.PipelineStateError):
            await sup.send(p.id, "c.input", "x")


async def test_bad_commands_get_typed_errors_and_the_pipeline_keeps_serving(supervisor: Make) -> None:
    async with supervisor(max_frame_bytes=64 * 1024) as sup:
        with pytest.raises(wf.InvalidCommand, match="no flow named 'nope'"):
            await sup.start("nope")
        with pytest.raises(wf.InvalidCommand, match="restart must be one of"):
            await sup.start("echo", restart="sometimes")
        with pytest.raises(wf.InvalidCommand):
            await sup.start("echo", {"echo.missing": [1]})
        assert sup.pipelines() == []
        p = await sup.start("echo")
        with pytest.raises(wf.PipelineNotFound):
            sup.get("nope")
        with pytest.raises(wf.InvalidCommand):
            await sup.send(p.id, "echo.missing", 1)
        with pytest.raises(wf.InvalidCommand, match="frame limit"):
            await sup.send(p.id, "echo.input", "x" * 100_000)
        with pytest.raises(wf.InvalidCommand, match="cannot encode"):
            await sup.send(p.id, "echo.input", lambda: 1)
        with pytest.raises(wf.PipelineStateError):
            await sup.resume(p.id)
        child = sup.child(p.id)
        assert child is not None
        loop = asyncio.get_running_loop()
        answers = {rid: loop.create_future() for rid in (10_001, 10_002)}
        child._pending.update(answers)
        await child.send_raw(HEADER.pack(3, 10_001) + b"\x00\x01\x02")
        await child.send_raw(HEADER.pack(100_000, 10_002) + b"z" * 100_000)
        for rid, reason in ((10_001, "malformed"), (10_002, "oversized")):
            with pytest.raises(wf.InvalidCommand) as info:
                await asyncio.wait_for(answers[rid], 5)
            assert getattr(info.value, "reason", None) == reason
        await sup.send(p.id, "echo.input", "still serving")
        assert await sup.results(p.id, wait_s=5) == ["still serving"]
        assert sup.get(p.id).state == "running"


async def test_results_under_backpressure_lose_nothing(supervisor: Make) -> None:
    async with supervisor(results_capacity=50) as sup:
        p = await sup.start("ticker", {"src.start": [2000]})
        got: list[int] = []
        while len(got) < 2000:
            batch = await sup.results(p.id, max_items=37, wait_s=5)
            assert batch
            assert sup.remaining(p.id) <= 50
            got += batch
        assert got == list(range(2000))
        assert sup.get(p.id).state == "running"


async def test_pause_holds_the_job_and_resume_goes_on(supervisor: Make) -> None:
    async with supervisor() as sup:
        p = await sup.start("echo")
        paused = await sup.pause(p.id)
        assert paused.state == "paused"
        with pytest.raises(wf.PipelineStateError, match="already paused"):
            await sup.pause(p.id)
        for i in range(3):
            await sup.send(p.id, "echo.input", i)
        assert await sup.results(p.id, wait_s=0.3) == []  # queued, not processed
        assert sup.get(p.id).state == "paused"
        resumed = await sup.resume(p.id)
        assert resumed.state == "running"
        got: list[Any] = []
        while len(got) < 3:
            got += await sup.results(p.id, wait_s=5)
        assert got == [0, 1, 2]


async def test_a_start_takes_a_warm_spare_and_the_pool_refills(supervisor: Make) -> None:
    async with supervisor(warm=1) as sup:
        pool = sup.pool
        assert pool is not None
        await asyncio.wait_for(pool.wait_spare(), 30)
        spare = pool.spares[0]
        p = await sup.start("echo")
        assert p.pid == spare.pid
        assert (pool.warm_starts, pool.cold_starts) == (1, 0)
        assert len(pool.spares) + len(pool.starting) == 1  # refilling


@pytest.mark.slow
async def test_leaving_the_block_stops_every_child_in_parallel(supervisor: Make) -> None:
    grace_s = 1.0
    async with supervisor(warm=1, grace_s=grace_s) as sup:
        ps = [await sup.start("ticker", {"src.start": [-1]}) for _ in range(3)]  # never drain
        pids = [p.pid for p in ps] + [c.pid for c in (sup.pool.spares if sup.pool else [])]
        t0 = time.monotonic()
    took_s = time.monotonic() - t0
    assert took_s <= grace_s + 1
    assert all(sup.get(p.id).state == "stopped" for p in ps)
    for pid in pids:
        assert pid is not None
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_a_restart_whose_spawn_fails_is_retried_after_its_backoff(supervisor: Make) -> None:
    """The spawn fails for real, not through a patch: this process's descriptor table is
    full (``RLIMIT_NOFILE`` lowered to the highest descriptor open now, every free number
    below it taken), so the pipe to a new child cannot be made (``EMFILE``). Each failed
    spawn counts as a failed start, retried after the backoff, until the intensity."""
    async with supervisor(warm=0, intensity=2, backoff_initial_s=0.05) as sup:
        p = await sup.start("echo")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        fillers: list[int] = []
        failed = asyncio.ensure_future(sup.wait_state(p.id, "failed", timeout_s=30))
        try:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (max(int(fd) for fd in os.listdir("/proc/self/fd")) + 1, hard)
            )
            with contextlib.suppress(OSError):
                while True:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            os.kill(p.pid or -1, signal.SIGKILL)
            info = await failed
        finally:
            while fillers:
                os.close(fillers.pop())
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert info.restarts == 2  # the crash, then a failed spawn: each restarted after its backoff
        assert info.reason is not None and "could not be spawned" in info.reason, info.reason
        assert "Too many open files" in info.reason and "restart intensity exceeded" in info.reason
