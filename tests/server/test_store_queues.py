"""Pausing and resuming a durable queue over HTTP (``/api/store/queues``)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.conftest import ADMIN_KEY, READ_KEY, live_server
from weirflow.durable import open_store

FLOWS = "tests.durable.flows"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}
QUEUES = "/api/store/queues"


async def test_a_queue_paused_over_http_is_not_claimed_until_resumed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'weirflow.db'}"
    keys = f"{ADMIN_KEY}:admin,{READ_KEY}:read"
    with live_server(FLOWS, headers=ADMIN, store=url, api_keys=keys) as served:
        admin = served.client
        job = admin.post("/api/store/jobs", json={"flow": "one", "inputs": {"a.item": [{}]}})
        assert job.status_code == 201, job.text
        assert admin.get(QUEUES).json() == {"paused": []}
        paused = admin.post(f"{QUEUES}/default/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json() == {"queue": "default", "paused": True, "changed": True}
        assert admin.post(f"{QUEUES}/default/pause").json()["changed"] is False
        with httpx.Client(base_url=served.url, headers=READ, timeout=10) as reader:
            assert reader.get(QUEUES).json() == {"paused": ["default"]}
            assert reader.post(f"{QUEUES}/default/resume").status_code == 403  # admin only
        store = open_store(url)
        await store.open()
        try:
            assert (await store.claim("default", "w", limit=5, lease_s=30)).jobs == []
            resumed = admin.post(f"{QUEUES}/default/resume")
            assert resumed.json() == {"queue": "default", "paused": False, "changed": True}
            claim = await store.claim("default", "w", limit=5, lease_s=30)
            assert [j.id for j in claim.jobs] == [job.json()["id"]]
        finally:
            await store.close()
        assert admin.post(f"{QUEUES}/{'x' * 201}/pause").status_code == 422
