"""What ``weirflow worker`` logs is true: a retried attempt is a retry, a failure is the
job's last attempt, the stop summary counts jobs; every line on stderr."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import weirflow as wf
from weirflow.durable import JobSpec, open_store

from .helpers import job_is, poll_store
from .procs import FLOWS_MODULE, ROOT


async def test_a_retry_is_logged_as_a_retry_and_the_summary_counts_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = open_store(url)
    await store.open()
    try:
        passing = await store.submit(JobSpec(flow="noop", inputs={"n.input": [1]}))
        failing = await store.submit(
            JobSpec(
                flow="one",
                inputs={"a.item": [{"fail": True}]},
                max_attempts=2,
                backoff=wf.Backoff(initial_s=0, jitter=False),
            )
        )
        out, err = tmp_path / "out", tmp_path / "err"
        with out.open("w") as o, err.open("w") as e:
            proc = subprocess.Popen(
                [sys.executable, "-m", "weirflow", "worker", "--flows", FLOWS_MODULE, "--store", url],
                cwd=ROOT,
                stdout=o,
                stderr=e,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:

                async def both_done() -> bool:
                    return bool(
                        await job_is(store, passing, "completed") and await job_is(store, failing, "failed")
                    )

                await poll_store(both_done, timeout_s=60)  # another process's work: poll the store
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0
    finally:
        await store.close()
    assert out.read_text() == ""
    lines = err.read_text().splitlines()
    retrying = [line for line in lines if "job_retrying" in line]
    failed = [line for line in lines if "job_failed" in line]
    assert len(retrying) == 1 and f"job={failing}" in retrying[0], lines
    assert (
        "attempt=1" in retrying[0] and "max_attempts=2" in retrying[0] and "failed on purpose" in retrying[0]
    )
    assert len(failed) == 1 and f"job={failing}" in failed[0] and "attempts=2" in failed[0], lines
    assert "status=queued" not in "\n".join(lines)
    [stopped] = [line for line in lines if "worker_stopped" in line]
    # two jobs: one completed, one failed (after one retry); not "failed=2" for two attempts
    assert "completed=1" in stopped and "failed=1" in stopped and "retried=1" in stopped, stopped
