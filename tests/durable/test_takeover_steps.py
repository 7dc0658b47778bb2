"""The shared store suite, on every backend: a takeover (recover, sweep, cancel, retry)
leaves the step rows saying what the job's journal finished.

The worker appends a step's ``done`` to the journal at once and writes its step rows in
batches later (``StepJournal.flush_s``), so a worker killed between the two leaves a
finished step's row still ``running``, or no row at all. The store that takes the job
over reads the journal in the same transaction: those steps are ``completed`` (or
``failed``), the others that were running ``interrupted``."""

from __future__ import annotations

from typing import Any

import pytest

from weirflow.durable import JobSpec, StepRecord, Store
from weirflow.runtime.journal import Step
from weirflow.runtime.records import Codec

from .conftest import FakeClock

CODEC = Codec()


def _start(routine: str) -> str:
    step = Step(routine, 1, 1, [("item", 1)])
    return CODEC.start(CODEC.head(step)).decode()


def _done(routine: str, status: str = "completed", error: str | None = None) -> str:
    step = Step(routine, 1, 1, [("item", 1)])
    step.status, step.error, step.final = status, error, True
    return CODEC.finished(step, None).decode()


async def _killed_after_the_journal(store: Store) -> tuple[str, int]:
    """w1 ran a job whose journal finished ``a`` (its row still says running), ``c`` (no
    row: it started and ended within one batch of rows) and ``d`` (failed for good, no
    row), and started ``b``; then w1 died with those rows unwritten."""
    job_id = await store.submit(JobSpec("f", {"a.item": [1]}, max_attempts=3))
    token = (await store.claim("default", "w1", limit=1, lease_s=30)).jobs[0].token
    rows = [
        StepRecord(job_id, r, 1, "running", attempt=1, run=token, progress=40, worker="w1", started_at=1.0)
        for r in "ab"
    ]
    assert await store.record_steps(rows) == []
    journal = [_start("a"), _done("a"), _start("b"), _start("c"), _done("c"), _start("d")]
    journal.append(_done("d", "failed", "ValueError: d failed"))
    assert await store.append_journal([(job_id, r) for r in journal], tokens={job_id: token}) == []
    return job_id, token


def _outcomes(steps: list[StepRecord]) -> dict[str, tuple[str, int, str | None]]:
    return {s.routine: (s.status, s.attempt, s.worker) for s in steps}


@pytest.mark.parametrize("takeover", ["recover", "sweep", "claim", "cancel", "retry"])
async def test_a_takeover_leaves_the_steps_the_journal_finished_finished(
    store: Store, clock: FakeClock, takeover: str
) -> None:
    job_id, token = await _killed_after_the_journal(store)
    if takeover == "recover":
        assert await store.recover("w1") == [job_id]
    elif takeover == "sweep":
        clock.advance(31)
        report = await store.sweep("sweeper")
        assert report is not None and report.requeued == [job_id]
    elif takeover == "claim":  # a claim takes expired leases back on its own
        clock.advance(31)
        [job] = (await store.claim("default", "w2", limit=1, lease_s=30)).jobs
        assert (job.id, job.token) == (job_id, token + 1)
    elif takeover == "cancel":
        assert (await store.cancel(job_id)).status == "cancelled"
    else:  # a stalled job retried by hand
        clock.advance(31)
        assert (await store.retry(job_id)).status == "queued"
    steps = await store.steps(job_id)
    assert _outcomes(steps) == {
        "a": ("completed", 1, "w1"),
        "b": ("interrupted", 1, "w1"),
        "c": ("completed", 1, "w1"),
        "d": ("failed", 1, "w1"),
    }
    by: dict[str, Any] = {s.routine: s for s in steps}
    assert (by["a"].progress, by["a"].started_at, by["a"].run) == (100, 1.0, token)
    assert by["d"].error == "ValueError: d failed"
    assert by["b"].completed_at == clock.now and "interrupted" in (by["b"].error or "")
    assert by["b"].progress == 40
