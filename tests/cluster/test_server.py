"""``GET /api/nodes`` and the registry in ``/readyz``, on a live server with ``--registry``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import weirflow as wf
from tests.redisserver import free_port
from tests.server.conftest import live_server
from weirflow.cluster import Registry

Make = Callable[..., Registry]
FLOWS = "tests.durable.flows"


async def test_the_server_lists_the_registry_nodes_and_reports_its_status(
    redis_url: str, registries: Make
) -> None:
    reg = registries(redis_url)
    await reg.start()
    gpu = await reg.register("gpu-1", pool="gpu", capacity=4, running=1, labels={"zone": "a"}, address="h:1")
    await reg.register("cpu-1", pool="cpu", capacity=2)
    await reg.drain("cpu-1")
    with live_server(registry=redis_url) as live:  # it lists at start: both nodes are there
        answer = live.client.get("/api/nodes")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["registry"]["status"] == "normal" and body["registry"]["nodes"] == 2
        assert body["registry"]["revision"] == 3  # three writes
        assert [(n["id"], n["pool"], n["state"]) for n in body["nodes"]] == [
            ("cpu-1", "cpu", "draining"),
            ("gpu-1", "gpu", "up"),
        ]
        assert body["nodes"][1] == {**gpu.to_dict(), "labels": {"zone": "a"}}
        only = live.client.get("/api/nodes", params={"pool": "gpu"}).json()
        assert [n["id"] for n in only["nodes"]] == ["gpu-1"]
        ready = live.client.get("/readyz").json()
        assert ready["registry"]["status"] == "normal" and ready["registry"]["nodes"] == 2
        metrics = live.client.get("/metrics").text
        assert 'weirflow_cluster_status{status="normal"} 1.0' in metrics
        assert "weirflow_cluster_nodes 2.0" in metrics
        assert 'weirflow_cluster_redis_latency_seconds{quantile="0.99"}' in metrics
        assert "weirflow_slot_queue_size" in metrics or "weirflow_jobs" in metrics  # the engine's too


def test_without_a_registry_nodes_answer_503_and_readyz_has_none() -> None:
    with live_server() as live:
        answer = live.client.get("/api/nodes")
        assert answer.status_code == 503 and "--registry" in answer.json()["detail"]
        assert live.client.get("/readyz").json()["registry"] is None


def test_a_server_starts_while_its_registry_is_unreachable_and_shows_no_password() -> None:
    url = f"redis://:pw-hunter2@127.0.0.1:{free_port()}/0"
    with live_server(registry=url) as live:
        answer = live.client.get("/api/nodes")
        assert answer.status_code == 200
        body = answer.json()
        assert body["nodes"] == [] and body["registry"]["status"] != "normal"
        assert "pw-hunter2" not in answer.text and body["registry"]["url"].startswith(
            "redis://:***@127.0.0.1"
        )
        assert "pw-hunter2" not in live.client.get("/readyz").text


def test_a_password_in_the_registry_url_query_string_is_not_shown() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?password=pw-hunter2"
    with live_server(registry=url) as live:
        answer = live.client.get("/api/nodes")
        assert answer.status_code == 200
        assert "pw-hunter2" not in answer.text
        assert answer.json()["registry"]["url"] == url.replace("pw-hunter2", "***")
        assert "pw-hunter2" not in live.client.get("/readyz").text


async def test_store_jobs_with_a_pool_go_to_the_registry_nodes(
    redis_url: str, registries: Make, tmp_path: Path
) -> None:
    """``POST /api/store/jobs`` (and ``/batch``) with ``pool``/``labels`` on a server with
    ``--registry``: each job is assigned to a matching node with room (queued unassigned
    when none has), its queue the pool's unless given."""
    reg = registries(redis_url)
    await reg.start()
    await reg.register("a1", pool="gpu", capacity=2, labels={"zone": "a"})
    await reg.register("b1", pool="gpu", capacity=3, labels={"zone": "b"})
    store = f"sqlite:///{tmp_path / 'w.db'}"
    with live_server(FLOWS, registry=redis_url, store=store) as live:
        body = {"flow": "one", "inputs": {"a.item": [{}]}, "pool": "gpu", "labels": {"zone": "a"}}
        first = live.client.post("/api/store/jobs", json=body)
        assert first.status_code == 201, first.text
        own_queue = live.client.post("/api/store/jobs", json={**body, "queue": "elsewhere"}).json()
        full = live.client.post("/api/store/jobs", json=body).json()  # a1 holds 2 of 2
        listed = {
            j["id"]: (j["node"], j["queue"]) for j in live.client.get("/api/store/jobs").json()["items"]
        }
        assert [listed[j["id"]] for j in (first.json(), own_queue, full)] == [
            ("a1", "gpu"),
            ("a1", "elsewhere"),
            (None, "gpu"),
        ]
        assert first.json()["node"] == "a1"

        batch = live.client.post(
            "/api/store/jobs/batch",
            json={
                "jobs": [{**body, "labels": {"zone": "b"}}] * 4
                + [{"flow": "one", "inputs": {"a.item": [{}]}}]
            },
        )
        assert batch.status_code == 201, batch.text
        nodes = [live.client.get(f"/api/store/jobs/{i}").json()["node"] for i in batch.json()["ids"]]
        assert nodes == ["b1", "b1", "b1", None, None]  # b1's 3 slots; then none with room; no pool


async def test_a_pool_on_a_server_without_a_registry_is_a_422_naming_it(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'w.db'}"
    with live_server(FLOWS, store=store) as live:
        job = {"flow": "one", "inputs": {"a.item": [{}]}}
        answer = live.client.post("/api/store/jobs", json={**job, "pool": "gpu"})
        assert answer.status_code == 422 and "--registry" in answer.json()["detail"], answer.text
        assert answer.json()["detail"].startswith("body.pool: ")
        labels = live.client.post("/api/store/jobs", json={**job, "labels": {"zone": "a"}})
        assert labels.status_code == 422 and labels.json()["detail"].startswith("body.labels: "), labels.text
        batch = live.client.post("/api/store/jobs/batch", json={"jobs": [job, {**job, "pool": "gpu"}]})
        assert batch.status_code == 422 and batch.json()["detail"].startswith("body.jobs.1.pool: ")
        assert live.client.get("/api/store/jobs").json()["items"] == []  # nothing queued


async def test_the_client_submits_to_a_pool(redis_url: str, registries: Make, tmp_path: Path) -> None:
    reg = registries(redis_url)
    await reg.start()
    await reg.register("a1", pool="gpu", capacity=3, labels={"zone": "a"})
    await reg.register("b1", pool="gpu", capacity=3, labels={"zone": "b"})
    with live_server(FLOWS, registry=redis_url, store=f"sqlite:///{tmp_path / 'w.db'}") as live:
        with wf.Client(live.url) as client:
            job = client.submit("one", {"a.item": [{}]}, pool="gpu", labels={"zone": "b"}, priority=2)
            assert job.node == "b1"
            batch = client.submit_many([("one", {"a.item": [{}]})] * 3, pool="gpu", labels={"zone": "a"})
            assert batch.created == [True] * 3
            assert [client.store_job(i).node for i in batch.ids] == ["a1"] * 3
        async with wf.AsyncClient(live.url) as aclient:
            late = await aclient.submit("one", {"a.item": [{}]}, pool="gpu")
            assert late.node == "b1"  # a1 is full, b1 has 2 free
            more = await aclient.submit_many([("one", {"a.item": [{}]})], pool="gpu", labels={"zone": "b"})
            assert (await aclient.store_job(more.ids[0])).node == "b1"
    with (
        live_server(FLOWS, store=f"sqlite:///{tmp_path / 'other.db'}") as live,
        wf.Client(live.url) as client,
    ):
        with pytest.raises(wf.RequestError) as refused:
            client.submit("one", {"a.item": [{}]}, pool="gpu")
        assert refused.value.status == 422 and "--registry" in str(refused.value)
