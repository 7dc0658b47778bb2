"""``/api/store/summary``, ``/api/store/queues/{queue}/retry-failed`` and
``/api/store/jobs/{id}/record``: against a live server with a SQLite store and a real
``Worker`` running the jobs (the helpers of ``test_store_routes``)."""

from __future__ import annotations

import httpx
import pytest

from tests.durable import flows
from tests.server.conftest import Live
from tests.server.test_store_routes import ADMIN, JOBS, READ, finished, served, store_url, submit, worker
from weirflow.durable.worker import Worker

__all__ = ["served", "store_url"]  # fixtures, used by name


async def test_summary_counts_by_status_and_queue_with_the_failure_rate(served: Live, store_url: str) -> None:
    ok = [submit(served.client, item={})["id"] for _ in range(3)]
    bad = submit(served.client, item={"fail": "b"}, attempts=1)["id"]
    other = submit(served.client, item={}, queue="other")["id"]  # no worker takes "other"
    async with httpx.AsyncClient(base_url=served.url, headers=ADMIN, timeout=10) as client:
        async with worker(store_url) as w:
            for job_id in [*ok, bad]:
                await finished(client, job_id, w)
        summary = (await client.get("/api/store/summary")).json()
    assert summary["by_status"] == {"queued": 1, "running": 0, "completed": 3, "failed": 1, "cancelled": 0}
    assert (summary["counted"], summary["truncated"]) == (5, False)
    default = summary["queues"]["default"]
    assert default["counts"]["completed"] == 3 and default["counts"]["failed"] == 1
    assert default["failure_rate"] == pytest.approx(0.25)
    assert default["last_hour"] == {"failed": 1, "finished": 4}
    assert summary["queues"]["other"]["failure_rate"] is None  # nothing finished there
    assert summary["queues"]["other"]["counts"]["queued"] == 1
    limited = served.client.get("/api/store/summary", params={"max_jobs": 2}).json()
    assert (limited["counted"], limited["truncated"]) == (2, True)
    record = served.client.get(f"{JOBS}/{other}/record").json()
    assert (record["id"], record["queue"], record["status"]) == (other, "other", "queued")
    assert served.client.get(f"{JOBS}/nope/record").status_code == 404


async def test_retry_failed_requeues_every_failed_job_of_the_queue_only(served: Live, store_url: str) -> None:
    failing = [submit(served.client, item={"fail": "b"}, attempts=1)["id"] for _ in range(3)]
    elsewhere = submit(served.client, item={"fail": "b"}, attempts=1, queue="q2")["id"]
    done = submit(served.client, item={})["id"]
    async with httpx.AsyncClient(base_url=served.url, headers=ADMIN, timeout=10) as client:
        async with worker(store_url) as w:
            for job_id in [*failing, done]:
                await finished(client, job_id, w)
        async with Worker(store_url, [flows.steps3], queue="q2", poll_min_s=0.01, poll_max_s=0.05) as w2:
            await finished(client, elsewhere, w2)
        with httpx.Client(base_url=served.url, headers=READ) as reader:
            assert reader.post("/api/store/queues/default/retry-failed").status_code == 403
        response = await client.post("/api/store/queues/default/retry-failed")
        assert response.status_code == 200, response.text
        assert sorted(response.json()["retried"]) == sorted(failing)
        assert response.json()["refused"] == []
        jobs = [*failing, done, elsewhere]
        statuses = {j: (await client.get(f"{JOBS}/{j}")).json()["status"] for j in jobs}
    assert statuses == {**dict.fromkeys(failing, "queued"), done: "completed", elsewhere: "failed"}
    again = served.client.post("/api/store/queues/default/retry-failed").json()
    assert again == {"retried": [], "refused": []}


async def test_clean_deletes_finished_jobs_older_than_the_age_only(served: Live, store_url: str) -> None:
    done = [submit(served.client, item={})["id"] for _ in range(2)]
    failed = submit(served.client, item={"fail": "a"}, attempts=1)["id"]
    queued = submit(served.client, item={}, queue="idle")["id"]  # no worker takes "idle"
    client = httpx.AsyncClient(base_url=served.url, headers=ADMIN, timeout=10)
    async with client, worker(store_url) as w:
        for job_id in [*done, failed]:
            await finished(client, job_id, w)
    with httpx.Client(base_url=served.url, headers=READ) as reader:
        assert (
            reader.post("/api/store/clean", json={"status": "completed", "older_than_s": 0}).status_code
            == 403
        )
    keep = served.client.post("/api/store/clean", json={"status": "completed", "older_than_s": 3600})
    assert keep.json() == {"deleted": 0}
    gone = served.client.post("/api/store/clean", json={"status": "completed", "older_than_s": 0})
    assert gone.json() == {"deleted": 2}
    left = {j["id"] for j in served.client.get(JOBS).json()["items"]}
    assert left == {failed, queued}
    assert served.client.get(f"{JOBS}/{done[0]}").status_code == 404
    assert served.client.post("/api/store/clean", json={"status": "failed", "older_than_s": 0}).json() == {
        "deleted": 1
    }
    assert [j["id"] for j in served.client.get(JOBS).json()["items"]] == [queued]
    bad = served.client.post("/api/store/clean", json={"status": "queued", "older_than_s": 0})
    assert bad.status_code == 422
