"""A worker whose lease on a job it still runs ran out (its clock jumped ahead: an NTP
step, a VM resumed; or renewals that did not get through) takes that job over itself in
its next claim: claims take back expired leases first, and a stalled job keeps its
place. The earlier run is then stopped here as a lost one, and the new run starts once
nothing of the earlier one is left: the job completes, its step ran again after the
first call stopped, never beside it. (Before, the new run could not start beside the old
one, ``a job with id ... already exists``, and that failed the job for good with
attempts left.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from weirflow.durable import JobSpec, Store, open_store
from weirflow.durable.worker import Worker

from . import flows
from .helpers import job_is, poll_store

pytestmark = pytest.mark.slow


class JumpingClock:
    """The store's clock: the wall clock, moved ahead by hand."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead_s


async def _step_running(store: Store, job_id: str) -> bool:
    return any(s.status == "running" for s in await store.steps(job_id))


def _lines(log: Path, kind: str) -> list[list[str]]:
    return [line.split(":") for line in log.read_text().split() if line.startswith(f"{kind}:")]


@pytest.mark.parametrize("store_url", ["sqlite", "postgres", "redis"], indirect=True)
async def test_a_worker_that_claims_its_own_running_job_again_stops_the_first_run(
    store_url: str, tmp_path: Path
) -> None:
    clock = JumpingClock()
    store = open_store(store_url, clock=clock)
    await store.open()
    steps_log = tmp_path / "steps.log"
    item = {
        "first_sleep_s": 30.0,
        "first_sleep_once": str(tmp_path / "slept"),
        "sleep_s": 0.1,
        "log": str(steps_log),
        "times": True,
        "stops": True,
    }
    try:
        job_id = await store.submit(JobSpec(flow="one", inputs={"a.item": [item]}, max_attempts=5))
        # (renewals every 1.5 s: the claim loop, which looks for expired leases every
        # 0.5 s, comes first after the jump)
        async with Worker(
            store, [flows.one], worker_id="W", lease_s=2.0, heartbeat_s=1.5, concurrency=2, poll_max_s=0.2
        ) as w:
            await poll_store(lambda: _step_running(store, job_id), timeout_s=20)
            clock.ahead_s = 60.0  # the clock jumps a minute ahead while ``a`` runs
            await poll_store(lambda: job_is(store, job_id, "completed", "failed"), timeout_s=30)
            w.stop()
        job = await store.get(job_id)
        assert job is not None and job.status == "completed", (job and job.status, job and job.error)
        assert job.outputs is not None and len(job.outputs["a.out"]) == 1
        kinds = [e.kind for e in await store.events(job_id=job_id)]
        assert kinds == ["queued", "running", "stalled", "running", "completed"], kinds
        [stop] = _lines(steps_log, "stop")  # the first call, stopped by the worker
        first, second = _lines(steps_log, "start")
        assert float(first[5]) < float(stop[6]) <= float(second[5])  # never two calls at once
        assert len(_lines(steps_log, "end")) == 1
        [step] = await store.steps(job_id)
        assert (step.status, step.attempt) == ("completed", 2)
    finally:
        await store.close()
