"""The kill grid: a worker process ``kill -9``-ed at 4 points of a 3-step job, the job
taken over (by the sweeper after the lease, or by the restarted worker), on SQLite and
PostgreSQL. The step rows must say what the journal had committed when the worker
died, before and after another worker resumes the job.

Each kill comes ``after_s`` after its point: 0.3 s lets the journal and the step rows
(written in batches every 0.2 s) both catch up; at ``c-start-early`` (0.05 s) the journal
has committed ``b``'s end and ``c``'s start but ``b``'s ``completed`` row is usually still
in the dead worker's batch, so the store's takeover must take it from the journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from weirflow.durable import JobSpec, Store, open_store
from weirflow.durable.journal import DurableJournal

from .helpers import poll_store, step_outcomes
from .procs import WorkerProcess

POINTS = [
    ("a", "start", 0.3),
    ("b", "start", 0.3),
    ("b", "after_emit", 0.3),
    ("c", "after_emit", 0.3),
    ("c", "start", 0.05),
]
IDS = [f"{r}-{w}" + ("-early" if after_s < 0.3 else "") for r, w, after_s in POINTS]


def committed_steps(records: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """routine -> ("done" | "started", attempt) of what the journal holds (seq 1 each)."""
    out: dict[str, tuple[str, int]] = {}
    for rec in records:
        if rec["t"] == "start":
            out[rec["routine"]] = ("started", rec["attempt"])
        elif rec["t"] == "done" and rec["status"] == "completed":
            out[rec["routine"]] = ("done", rec["attempt"])
    return out


async def completed(store: Store, job_id: str) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status == "completed"


@pytest.mark.slow
@pytest.mark.parametrize("takeover", ["sweep", "recover"])
@pytest.mark.parametrize(("routine", "when", "after_s"), POINTS, ids=IDS)
async def test_step_rows_equal_the_journal_after_a_kill(
    url: str, tmp_path: Path, routine: str, when: str, after_s: float, takeover: str
) -> None:
    steps_log = tmp_path / "steps.log"
    kill = {"routine": routine, "when": when, "once": str(tmp_path / "killed"), "after_s": after_s}
    item = {"sleep_s": 0.1, "log": str(steps_log), "kill": kill}
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="steps3", inputs={"a.item": [item]}, max_attempts=3))
        with WorkerProcess(url, tmp_path / "w1.log", "--worker-id", "w1", "--lease", "1.5") as w1:
            assert w1.wait(60) == -9  # it killed itself at the point
        committed = committed_steps(await DurableJournal(store).records_of(job_id))
        assert committed[routine][0] == "started"  # the kill came mid-step
        if takeover == "sweep":

            async def swept() -> bool:
                report = await store.sweep("test-sweeper")
                return report is not None and job_id in report.requeued

            await poll_store(swept, timeout_s=30)
        else:
            assert await store.recover("w1") == [job_id]
        # taken over: no running step; what the journal finished is completed (also when
        # its row was still in the dead worker's batch), the dead attempt's others interrupted
        rows = await store.steps(job_id)
        finished = {name for name, (state, _) in committed.items() if state == "done"}
        assert finished <= {row.routine for row in rows}, (committed, rows)
        for row in rows:
            state, attempt = committed.get(row.routine, ("none", 0))
            if state == "done":
                assert (row.status, row.attempt, row.worker) == ("completed", attempt, "w1")
            else:
                assert row.status == "interrupted", row
                assert row.worker == "w1" and row.completed_at is not None
                assert "w1" in (row.error or "")
        second = "w1" if takeover == "recover" else "w2"
        with WorkerProcess(url, tmp_path / "w2.log", "--worker-id", second, "--lease", "1.5") as w2:
            await poll_store(lambda: completed(store, job_id), timeout_s=60)
            assert w2.terminate() == 0
        job = await store.get(job_id)
        assert job is not None and job.outputs is not None and len(job.outputs["c.out"]) == 1
        assert (job.attempt, job.stalls) == (2, 1)
        # what the journal had finished kept its row; what it had started ran again as
        # the same step, one attempt higher (the dead attempt interrupted); the rest once
        expected = []
        for name in "abc":
            state, attempt = committed.get(name, ("none", 0))
            if state == "done":
                expected.append((name, "completed", attempt, "w1"))
            elif state == "started":
                expected.append((name, "completed", attempt + 1, second))
            else:
                expected.append((name, "completed", 1, second))
        assert step_outcomes(await store.steps(job_id)) == expected
        # and each handler call ran exactly as often as the rows say
        ran = [line.split(":", 1)[1] for line in steps_log.read_text().split()]
        assert sorted(ran) == sorted(
            f"{name}:{a}" for name, _, attempt, _ in expected for a in range(1, attempt + 1)
        )
    finally:
        await store.close()
