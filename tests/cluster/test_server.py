"""``GET /api/nodes`` and the registry in ``/readyz``, on a live server with ``--registry``."""

from __future__ import annotations

from collections.abc import Callable

from tests.redisserver import free_port
from tests.server.conftest import live_server
from weirflow.cluster import Registry

Make = Callable[..., Registry]


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
