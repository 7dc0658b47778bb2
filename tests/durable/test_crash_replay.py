"""Crash after emit, with real worker processes: an item a downstream step took from a
step still running is delivered once after a ``kill -9`` (issue 9 §2).

s1 emits an item and works on; s2 starts on that item; the worker is killed once the
store holds s2's ``start`` (and, by construction, not s1's ``done``). The worker that
takes the job over runs s1 again (attempt 2: its first emit is the one already
delivered, not delivered again; its second is new) and s2 again on the item it had
taken. ``s3.out`` holds each item once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from weirflow.durable import JobSpec, open_store
from weirflow.durable.journal import DurableJournal

from .helpers import poll_store
from .procs import WorkerProcess


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
async def test_a_crash_after_a_downstream_step_took_an_emitted_item_delivers_it_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'weirflow.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg").new_database()
        if backend == "postgres"
        else str(request.getfixturevalue("redis_url"))
    )
    steps_log = tmp_path / "steps.log"
    store = open_store(url)
    await store.open()
    journal = DurableJournal(store)  # only to read the committed records back
    try:
        item = {"hang": str(tmp_path / "s2-took-it"), "log": str(steps_log)}
        job_id = await store.submit(
            JobSpec(flow="emit_twice", inputs={"s1.item": [item]}, max_attempts=2)
        )  # a crash is an attempt

        async def s2_start_committed() -> bool:  # the worker is another process
            return any(r["t"] == "start" and r["routine"] == "s2" for r in await journal.records_of(job_id))

        with WorkerProcess(url, tmp_path / "w1.log", "--worker-id", "w1", "--lease", "1.5") as first:
            await poll_store(s2_start_committed, timeout_s=30)
            first.kill()
        committed = await journal.records_of(job_id)
        assert not any(r["t"] == "done" for r in committed)  # the crash point of the issue
        assert [r["slot"] for r in committed if r["t"] == "enq"] == ["s1.item", "s2.item"]

        # the same worker id takes its unfinished job back at once
        with WorkerProcess(url, tmp_path / "w2.log", "--worker-id", "w1", "--lease", "1.5") as second:

            async def completed() -> bool:
                job = await store.get(job_id)
                return job is not None and job.status == "completed"

            await poll_store(completed, timeout_s=60)
            assert second.terminate() == 0
        job = await store.get(job_id)
        assert job is not None and job.outputs is not None
        assert sorted(out["k"] for out in job.outputs["s3.out"]) == [0, 1]  # each once
        ran = Counter(line.split(":", 1)[1] for line in steps_log.read_text().split())
        # s1 and s2 ran again one attempt higher; s2's other call and s3's ran once
        assert ran == {"s1:1": 1, "s1:2": 1, "s2:1": 2, "s2:2": 1, "s3:1": 2}
    finally:
        await store.close()
