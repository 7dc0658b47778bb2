"""Crash tests with real processes: ``kill -9`` a worker mid-step; restart PostgreSQL mid-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from weirflow.durable import JobSpec, Store, open_store

from .helpers import poll_store, step_outcomes
from .pgserver import PgServer
from .procs import WorkerProcess


def slow_job(log: Path, sleep_s: float = 0.6) -> JobSpec:
    return JobSpec(flow="steps3", inputs={"a.item": [{"sleep_s": sleep_s, "log": str(log)}]}, max_attempts=2)


async def step_running(store: Store, job_id: str, routine: str) -> bool:
    return any(s.routine == routine and s.status == "running" for s in await store.steps(job_id))


async def status_is(store: Store, job_id: str, status: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status == status


@pytest.mark.parametrize("same_id", [False, True], ids=["other-worker", "same-worker-id"])
async def test_kill_9_mid_step_then_another_worker_completes_the_job(tmp_path: Path, same_id: bool) -> None:
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    steps_log = tmp_path / "steps.log"
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(slow_job(steps_log))
        with WorkerProcess(url, tmp_path / "w1.log", "--worker-id", "w1", "--lease", "1.5") as first:
            # another process writes the steps rows: poll the store (bounded)
            await poll_store(lambda: step_running(store, job_id, "b"), timeout_s=30)
            first.kill()
        job = await store.get(job_id)
        assert job is not None and job.status == "running" and job.worker_id == "w1"
        second_id = "w1" if same_id else "w2"
        with WorkerProcess(url, tmp_path / "w2.log", "--worker-id", second_id, "--lease", "1.5") as second:
            await poll_store(lambda: status_is(store, job_id, "completed"), timeout_s=30)
            assert second.terminate() == 0
        job = await store.get(job_id)
        # the crash counted as the first attempt
        assert job is not None and (job.stalls, job.worker_id, job.attempt) == (1, second_id, 2)
        assert job.outputs is not None and len(job.outputs["c.out"]) == 1
        kinds = [e.kind for e in await store.events(job_id=job_id)]
        assert kinds == ["queued", "running", "stalled", "running", "completed"]
        # resumed from the last committed step: a ran once, only the interrupted b ran
        # twice (its second attempt says so), and c once
        ran = [line.split(":", 1)[1] for line in steps_log.read_text().split()]
        assert ran == ["a:1", "b:1", "b:2", "c:1"]
        # b's rerun is the same step with its second attempt; the first is interrupted
        assert step_outcomes(await store.steps(job_id)) == [
            ("a", "completed", 1, "w1"),
            ("b", "completed", 2, second_id),
            ("c", "completed", 1, second_id),
        ]
    finally:
        await store.close()


async def test_kill_9_mid_stream_loses_no_queued_item(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    steps_log = tmp_path / "steps.log"
    items = [{"sleep_s": 0.3, "log": str(steps_log), "n": n} for n in range(4)]
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="steps3", inputs={"a.item": items}, max_attempts=2))

        async def some_done() -> bool:  # another process writes the steps rows
            return sum(s.status == "completed" for s in await store.steps(job_id)) >= 4

        with WorkerProcess(url, tmp_path / "w1.log", "--worker-id", "w1", "--lease", "1.5") as first:
            await poll_store(some_done, timeout_s=30)
            first.kill()
        done_before = sum(s.status == "completed" for s in await store.steps(job_id))
        with WorkerProcess(url, tmp_path / "w2.log", "--worker-id", "w2", "--lease", "1.5") as second:
            await poll_store(lambda: status_is(store, job_id, "completed"), timeout_s=60)
            assert second.terminate() == 0
        job = await store.get(job_id)
        assert job is not None and job.outputs is not None
        # every item arrived, once
        assert sorted(item["n"] for item in job.outputs["c.out"]) == [0, 1, 2, 3]
        ran = [line.split(":", 1)[1] for line in steps_log.read_text().split()]
        assert len(ran) == 12 + sum(r.endswith(":2") for r in ran)  # 4 items x 3 routines, + reruns
        assert sum(r.endswith(":2") for r in ran) <= 3  # at most the calls in flight at the kill
        steps = await store.steps(job_id)
        assert sum(s.status == "completed" for s in steps) == 12
        assert done_before >= 4
    finally:
        await store.close()


async def test_postgres_restart_mid_run(pg: PgServer, tmp_path: Path) -> None:
    url = pg.new_database()
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(slow_job(tmp_path / "steps.log", sleep_s=0.8))
        with WorkerProcess(url, tmp_path / "w.log", "--worker-id", "w1", "--lease", "5") as worker:
            await poll_store(lambda: step_running(store, job_id, "a"), timeout_s=30)
            await store.close()
            pg.stop()

            async def worker_saw_it() -> bool:  # the worker's log is another process's state
                out = worker.output()
                return any(
                    what in out
                    for what in (
                        "listen_failed",
                        "store_unavailable",
                        "heartbeat_failed",
                        "steps_not_recorded",
                    )
                )

            await poll_store(worker_saw_it, timeout_s=30)
            pg.start()
            await store.open()
            await poll_store(lambda: status_is(store, job_id, "completed"), timeout_s=60)
            # the worker's claims and LISTEN work again: a new job is picked up
            second = await store.submit(JobSpec(flow="noop", inputs={"n.input": [1]}))
            await poll_store(lambda: status_is(store, second, "completed"), timeout_s=30)
            assert worker.terminate() == 0
        job = await store.get(job_id)
        assert job is not None and (job.attempt, job.stalls) == (1, 0)
        assert [s.status for s in await store.steps(job_id)] == ["completed"] * 3
    finally:
        await store.close()
