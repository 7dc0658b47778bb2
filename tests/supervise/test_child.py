"""``ChildProcess`` with real spawned processes: framing, request ids, exits, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import psutil
import pytest

from weirflow.errors import ChildDiedError, CommandTimeout, FrameError, InvalidCommand
from weirflow.supervise import ChildProcess
from weirflow.supervise.framing import HEADER

ENTRY = "tests.supervise.children:echo_main"


@pytest.fixture
async def child() -> AsyncIterator[ChildProcess]:
    c = ChildProcess(ENTRY, "hello", max_frame_bytes=64 * 1024)
    await c.start(timeout_s=30)
    yield c
    await c.terminate(2)
    await c.close()


async def test_start_reports_ready_and_answers(child: ChildProcess) -> None:
    assert child.ready_info == {"arg": "hello"}
    assert psutil.pid_exists(child.pid or -1)
    assert await child.request("echo", [1, "a"], timeout_s=5) == [1, "a"]


async def test_a_child_imports_structlog_without_rich(child: ChildProcess) -> None:
    """structlog would import rich's console, traceback and pretty modules (with attrs and
    pygments) for a renderer a supervised child does not use: a sixth of a worker child's
    start (``weirflow._structlog``)."""
    modules = await child.request("modules", None, timeout_s=5)
    assert "structlog" in modules and "rich" not in modules


async def test_answers_are_matched_by_request_id_never_by_order(child: ChildProcess) -> None:
    slow = asyncio.ensure_future(child.request("sleep", 0.3, timeout_s=5))
    fast = [asyncio.ensure_future(child.request("echo", i, timeout_s=5)) for i in range(20)]
    assert await asyncio.gather(*fast) == list(range(20))  # answered before the slow one
    assert await slow == 0.3


async def test_a_late_answer_is_dropped_not_given_to_the_next_command(child: ChildProcess) -> None:
    with pytest.raises(CommandTimeout):
        await child.request("sleep", 0.3, timeout_s=0.05)
    # the next command is sent before the late answer to the first arrives, and gets its own
    second = asyncio.ensure_future(child.request("sleep", 0.5, timeout_s=5))
    assert await child.request("echo", "mine", timeout_s=5) == "mine"
    assert await second == 0.5
    assert child.stale_answers == 1


async def test_the_childs_errors_come_back_typed(child: ChildProcess) -> None:
    with pytest.raises(InvalidCommand, match="bad: x"):
        await child.request("fail", "x", timeout_s=5)
    with pytest.raises(FrameError, match="unknown command"):
        await child.request("nope", None, timeout_s=5)
    assert await child.request("echo", 1, timeout_s=5) == 1


async def test_oversized_commands_are_refused_before_sending(child: ChildProcess) -> None:
    with pytest.raises(FrameError, match="frame limit") as info:
        await child.request("echo", b"x" * 100_000, timeout_s=5)
    assert info.value.reason == "oversized"
    with pytest.raises(FrameError) as bad:
        await child.request("echo", lambda: 1, timeout_s=5)
    assert bad.value.reason == "malformed"
    assert await child.request("echo", "still here", timeout_s=5) == "still here"


async def test_malformed_and_oversized_frames_get_typed_errors_and_the_child_keeps_serving(
    child: ChildProcess,
) -> None:
    answers: dict[int, asyncio.Future[object]] = {}
    loop = asyncio.get_running_loop()
    for rid in (900, 901):
        answers[rid] = child._pending[rid] = loop.create_future()
    await child.send_raw(HEADER.pack(5, 900) + b"\x80junk")  # not a pickle
    await child.send_raw(HEADER.pack(200_000, 901) + b"z" * 200_000)  # past the child's limit
    with pytest.raises(FrameError) as malformed:
        await asyncio.wait_for(answers[900], 5)
    assert malformed.value.reason == "malformed"
    with pytest.raises(FrameError) as oversized:
        await asyncio.wait_for(answers[901], 5)
    assert oversized.value.reason == "oversized"
    assert await child.request("echo", "after", timeout_s=5) == "after"


async def test_an_answer_too_large_for_the_frame_is_a_typed_error(child: ChildProcess) -> None:
    await child.request("alloc", 0, timeout_s=5)
    with pytest.raises(FrameError):
        # the child's answer would be too big: it says so instead of sending it
        await child.request("echo", b"y" * 60_000 + b"y" * 10_000, timeout_s=5)


async def test_notifications_both_ways(child: ChildProcess) -> None:
    got: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    child.on_notification = lambda kind, body: got.put_nowait((kind, body))
    await child.notify("ping", 42)
    assert await asyncio.wait_for(got.get(), 5) == ("pong", 42)


async def test_kill_9_is_seen_at_once_with_the_signal(child: ChildProcess) -> None:
    waiting = asyncio.ensure_future(child.request("sleep", 30, timeout_s=60))
    await asyncio.sleep(0)  # let the request be written
    t0 = time.monotonic()
    os.kill(child.pid or -1, signal.SIGKILL)
    await asyncio.wait_for(child.exited.wait(), 5)
    seen_s = time.monotonic() - t0
    assert child.last_exit is not None
    assert child.last_exit.signal == "SIGKILL"
    assert child.last_exit.abnormal
    assert seen_s < 5
    with pytest.raises(ChildDiedError):
        await waiting
    with pytest.raises(ChildDiedError):
        await child.request("echo", 1, timeout_s=1)


async def test_exit_code_is_recorded() -> None:
    c = ChildProcess(ENTRY)
    exits: list[object] = []
    c.on_exit = exits.append
    await c.start(timeout_s=30)
    await c.request("exit", 3, timeout_s=5)
    await asyncio.wait_for(c.exited.wait(), 5)
    assert c.last_exit is not None
    assert (c.last_exit.code, c.last_exit.signal) == (3, None)
    assert exits == [c.last_exit]
    await c.close()


async def test_terminate_is_sigterm_first(child: ChildProcess) -> None:
    info = await child.terminate(5)
    assert info is not None
    assert info.signal == "SIGTERM"


async def test_terminate_kills_a_child_that_ignores_sigterm_after_grace(child: ChildProcess) -> None:
    await child.request("ignore_term", None, timeout_s=5)
    t0 = time.monotonic()
    info = await child.terminate(0.3, reason="unhealthy")
    assert time.monotonic() - t0 >= 0.3
    assert info is not None
    assert info.signal == "SIGKILL"
    assert info.reason.startswith("unhealthy")
    assert not psutil.pid_exists(child.pid or -1) or psutil.Process(child.pid).status() == "zombie"


async def test_rss_grows_with_what_the_child_holds(child: ChildProcess) -> None:
    before = child.rss_mb()
    assert before is not None
    await child.request("alloc", 64, timeout_s=10)
    after = child.rss_mb()
    assert after is not None
    assert after - before > 50


async def test_the_child_exits_when_the_supervisor_goes_away(child: ChildProcess) -> None:
    assert child._writer is not None
    child._writer.close()  # what the supervisor's death does to the pipe
    await asyncio.wait_for(child.exited.wait(), 5)
    assert child.last_exit is not None
    assert child.last_exit.code == 0
