"""``EventLog``: ids, ring buffer, replay after an id, waiting without polling."""

from __future__ import annotations

import asyncio

import weirflow as wf
from weirflow.runtime.hooks import Hooks
from weirflow.server.events import EventHub, EventLog, LoggedEvent


def test_ids_increase_and_the_ring_keeps_the_last_events() -> None:
    log = EventLog(capacity=3)
    for n in range(5):
        log.append("status", {"n": n})
    assert log.last_id == 5
    missed, events = log.since(0)
    assert missed == 2 and [e.id for e in events] == [3, 4, 5]
    assert log.since(2) == (0, list(log.events))
    assert log.since(4)[1][0].data == {"n": 4}
    assert log.since(5) == (0, [])
    assert log.since(99)[1] == list(log.events)  # an id this log never gave: replay what is kept


async def test_wait_wakes_on_append_and_close() -> None:
    log = EventLog(capacity=10)
    waiter = asyncio.create_task(log.wait(0, timeout_s=10))
    await asyncio.sleep(0)
    assert not waiter.done()
    log.append("queue", {})
    assert await asyncio.wait_for(waiter, 1) is True

    closer = asyncio.create_task(log.wait(1, timeout_s=10))
    await asyncio.sleep(0)
    log.close()
    assert await asyncio.wait_for(closer, 1) is True
    log.append("status", {})  # a closed log takes nothing more
    assert log.last_id == 1


async def test_wait_times_out_for_the_heartbeat() -> None:
    log = EventLog(capacity=10)
    assert await log.wait(0, timeout_s=0.01) is False
    assert log._waiters == []


def test_other_sources_publish_into_a_jobs_log() -> None:
    hub = EventHub(capacity=10)
    hub.publish("job-1", "breakpoint", {"id": "bp1"})
    assert hub.log("job-1").since(0) == (0, [LoggedEvent(1, "breakpoint", {"id": "bp1"})])
    hub.forget("job-1")
    assert "job-1" not in hub.logs


async def test_a_job_refused_its_completion_by_a_fatal_hook_logs_one_end() -> None:
    """A fatal hook failing at the result turns a completed job into a failed one (two
    finished statuses): its log still ends once, with the final status, and the hub's
    ``on_finished`` runs once."""

    @wf.routine
    async def echo(item: int) -> int:
        return item

    flow = wf.Flow("echo")
    flow.add("echo", echo)
    flow.output("echo.output")

    class Refuses(Hooks):
        fatal = True

        def on_job_result(self, job: object, result: object) -> None:
            raise RuntimeError("refused")

    finished: list[str] = []
    hub = EventHub(capacity=100, on_finished=lambda job: finished.append(job.id))
    engine = wf.Engine(hooks=[hub, Refuses()])
    job = await engine.start(flow, {"echo.input": [1]})
    result = await job.wait(timeout_s=5)
    await hub.aclose()
    assert result.status is wf.JobStatus.FAILED
    _, events = hub.log(job.id).since(0)
    ends = [e.data["status"] for e in events if e.kind == "end"]
    assert ends == ["failed"]
    assert finished == [job.id]  # (twice before: one task per finished status)
