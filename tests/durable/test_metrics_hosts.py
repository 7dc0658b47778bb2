"""``weirflow worker --metrics-port`` without API keys answers only requests that name a
loopback host (as a keyless ``weirflow serve`` does: ``421`` otherwise), so a web page
cannot read a worker's metrics by DNS rebinding; with keys, the key is the check."""

from __future__ import annotations

import httpx

from weirflow.durable.metrics import QueueMetrics
from weirflow.durable.metrics_http import start_metrics_server

from .test_queue_metrics import worker_with_metrics  # noqa: F401  (the fixture: a real worker process)


async def test_a_keyless_workers_metrics_answer_only_loopback_host_names(
    worker_with_metrics: tuple[str, str],  # noqa: F811
) -> None:
    _, metrics_url = worker_with_metrics
    port = metrics_url.split(":")[2].split("/")[0]
    async with httpx.AsyncClient() as http:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "127.8.9.10"):
            answer = await http.get(metrics_url, headers={"Host": host})
            assert answer.status_code == 200, (host, answer.text)
        for host in ("evil.example", f"evil.example:{port}", "10.0.0.7", "127.0.0.1.evil.example"):
            answer = await http.get(metrics_url, headers={"Host": host})
            assert answer.status_code == 421 and "weirflow_queue" not in answer.text, (host, answer.text)
            assert "localhost" in answer.text
        bad = await http.get(metrics_url, headers={"Host": "127.0.0.1:notaport"})
        assert bad.status_code == 400


async def test_with_api_keys_the_host_is_not_checked() -> None:
    """(What ``weirflow serve`` does with keys: a key is the credential; a proxy's name in
    ``Host`` is no reason to refuse.)"""
    server, task, url = await start_metrics_server(
        QueueMetrics(), host="127.0.0.1", port=0, api_keys={"k1": "read"}
    )
    try:
        async with httpx.AsyncClient() as http:
            good = await http.get(url, headers={"Authorization": "Bearer k1", "Host": "metrics.example"})
            assert good.status_code == 200
    finally:
        server.should_exit = True
        await task
