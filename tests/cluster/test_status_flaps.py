"""The registry's status on a busy machine and during an outage: a blocking read of the log
that comes back late because the process was busy is not an outage (the status stays
``normal``), and while Redis is stopped the status changes are logged once, then summed up
every ``status_log_every_s``, not a line for each of the breaker's flaps."""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog

from tests.redisserver import RedisServer
from weirflow.cluster.status_log import StatusLog

from .conftest import RegistryFactory

# The event loop busy for longer than the blocking read's deadline (0.2 + 1.0 s). The deadline
# is 1 s, not the default 0.1 s: the reads that confirm a late answer must not miss by
# themselves when the machine is loaded besides (a 0.3 s deadline flipped the status there).
DEADLINE_S = 1.0
HOG_S = 1.5


@pytest.mark.slow  # (6-8 s: three times the loop held 1.5 s)
async def test_a_blocking_read_answered_while_the_process_was_busy_keeps_the_status_normal(
    own_server: RedisServer, registries: RegistryFactory
) -> None:
    reg = registries(own_server.url(0), deadline_s=DEADLINE_S, follow_block_s=0.2)
    await reg.start()
    await reg.register("a", pool="p", capacity=1)
    with structlog.testing.capture_logs() as logged:
        for _ in range(3):
            await asyncio.sleep(0.4)  # (the follower goes back to its blocking read)
            time.sleep(HOG_S)  # the machine busy: nothing in this process runs meanwhile
        await asyncio.sleep(0.4)
        node = await reg.register("b", pool="p", capacity=1)
        await reg.wait_revision(node.revision, timeout_s=10)
    assert reg.status == "normal"
    assert reg.metrics.mode_switches == 0, [e for e in logged if e["event"] == "cluster registry status"]
    assert reg.metrics.follow_retries >= 1  # the reads did come back late, and were confirmed
    assert reg.metrics.deadline_misses >= 1


async def test_an_outage_logs_its_status_changes_once_then_a_summary_per_window(
    own_server: RedisServer, registries: RegistryFactory
) -> None:
    reg = registries(
        own_server.url(0), deadline_s=0.1, breaker_open_s=0.2, follow_block_s=0.3, status_log_every_s=1.0
    )
    # (a first list within 0.1 s may miss on a loaded machine: it lists again once Redis answers)
    await reg.start(require=False)
    await reg.wait_status("normal", timeout_s=30)
    with structlog.testing.capture_logs() as logged:
        own_server.pause()  # SIGSTOP: connections stay open, nothing answers
        try:
            await reg.wait_status("degraded", timeout_s=5)
            switches = reg.metrics.mode_switches
            await asyncio.sleep(3.0)  # the outage lasts (the breaker flaps meanwhile)
            flaps = reg.metrics.mode_switches - switches
        finally:
            own_server.cont()
        await reg.wait_status("normal", timeout_s=30)
        await reg.close()  # (the window's summary is written at close)
    lines = [e for e in logged if e["event"] == "cluster registry status"]
    assert flaps >= 6  # degraded <-> recovering, several times a second
    # the first change, then at most one line a second: the 3 s outage, the recovery window
    assert 2 <= len(lines) <= 6, lines
    assert lines[0]["status"] != "normal" and lines[0]["was"] == "normal"
    assert lines[-1]["status"] == "normal"
    assert sum(e.get("changes", 1) for e in lines) == reg.metrics.mode_switches


async def test_changes_held_in_a_window_whose_summary_runs_late_are_still_counted() -> None:
    """The window's summary is a timer: on a busy loop it can run after the next change has
    come in, past the window. That change's line counts the held ones too (they were lost:
    13 changes logged for 17 in an outage at load 8-10)."""
    status = ["normal"]
    with structlog.testing.capture_logs() as logged:
        slog = StatusLog("redis://x", lambda: status[0], every_s=0.05)
        for new, was in (("degraded", "normal"), ("recovering", "degraded")):
            status[0] = new
            slog.changed(new, was)  # the first at once, the second held for the summary
        time.sleep(0.1)  # the loop busy past the window: the summary's timer has not run
        status[0] = "degraded"
        slog.changed("degraded", "recovering")
        await asyncio.sleep(0.1)  # (the timer, had it not been cancelled)
        slog.close()
    lines = [e for e in logged if e["event"] == "cluster registry status"]
    assert sum(e.get("changes", 1) for e in lines) == 3, lines
    assert lines[-1]["status"] == "degraded"
