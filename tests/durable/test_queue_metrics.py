"""Durable queue metrics: jobs by status from the store, attempts by outcome, claim latency
and run times from the workers; served by ``weirflow worker --metrics-port`` and by
``weirflow serve --store``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import weirflow as wf
from tests.server.conftest import live_server
from weirflow.durable import JobSpec, open_store
from weirflow.durable.metrics import QueueMetrics
from weirflow.durable.worker import Worker

from . import flows
from .conftest import StoreFactory
from .helpers import job_is, poll_store, until
from .procs import FLOWS_MODULE, ROOT, cli

PORT_0 = ("--metrics-port", "0")
RETRY_AT_ONCE = wf.Backoff(initial_s=0, jitter=False)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def attempts(found: Samples, flow: str, outcome: str) -> float:
    return value(found, "weirflow_queue_attempts_total", queue="default", flow=flow, outcome=outcome)


def failing_and_passing() -> list[JobSpec]:
    return [
        JobSpec(flow="noop", inputs={"n.input": [1]}),
        JobSpec(flow="one", inputs={"a.item": [{"fail": True}]}, max_attempts=2, backoff=RETRY_AT_ONCE),
    ]


async def test_a_workers_metrics_count_jobs_by_status_and_attempts_by_outcome(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    metrics = QueueMetrics()
    metrics.watch_store(store)
    passing, failing = [await store.submit(s) for s in failing_and_passing()]
    await store.submit(JobSpec(flow="noop", inputs={"n.input": [2]}, delay_s=3600))
    async with Worker(store, [flows.noop, flows.one], worker_id="w1", metrics=metrics) as worker:

        async def done() -> bool:
            return bool(await job_is(store, passing, "completed") and await job_is(store, failing, "failed"))

        await until(done, worker, timeout_s=60)  # (a loaded machine: seconds, not one)
        found = samples((await metrics.render()).decode())
        assert value(found, "weirflow_worker_running_jobs", queue="default", worker="w1") == 0
        assert value(found, "weirflow_worker_concurrency", queue="default", worker="w1") == 3
    jobs = {s: value(found, "weirflow_queue_jobs", queue="default", status=s) for s in wf.durable.STATUSES}
    assert jobs == {"queued": 1, "running": 0, "completed": 1, "failed": 1, "cancelled": 0}
    assert value(found, "weirflow_queue_delayed_jobs", queue="default") == 1
    assert value(found, "weirflow_queue_oldest_waiting_seconds", queue="default") == 0  # none due waits
    assert value(found, "weirflow_queue_store_up") == 1
    # attempts: the failing job was retried once, then failed; nothing counted twice
    attempts = {
        (dict(labels)["flow"], dict(labels)["outcome"]): n
        for (name, labels), n in found.items()
        if name == "weirflow_queue_attempts_total"
    }
    assert attempts == {("noop", "completed"): 1, ("one", "retried"): 1, ("one", "failed"): 1}
    assert value(found, "weirflow_queue_claim_latency_seconds_count", queue="default") == 3
    assert value(found, "weirflow_queue_job_duration_seconds_count", queue="default", outcome="retried") == 1
    assert (
        value(found, "weirflow_queue_job_duration_seconds_count", queue="default", outcome="completed") == 1
    )


async def test_a_store_that_fails_a_scrape_is_reported_not_raised(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    await store.open()
    metrics = QueueMetrics()
    metrics.watch_store(store)
    await store.close()  # closed: every read fails
    found = samples((await metrics.render()).decode())
    assert value(found, "weirflow_queue_store_up") == 0


@pytest.fixture
def worker_with_metrics(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``weirflow worker --metrics-port 0`` on a SQLite store: (store URL, metrics URL)."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "weirflow", "worker", "--flows", FLOWS_MODULE, "--store", url, *PORT_0],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    said = []
    try:
        for line in proc.stderr:  # (blocks on the pipe until the worker writes a line)
            said.append(line)
            if "metrics at " in line:
                break
        assert said and "metrics at " in said[-1], "".join(said)
        yield url, said[-1].split("metrics at ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(said) + err
    assert out == "" and "error" not in err  # logs on stderr; stopped cleanly


async def test_weirflow_worker_serves_its_metrics_on_loopback(worker_with_metrics: tuple[str, str]) -> None:
    url, metrics_url = worker_with_metrics
    assert metrics_url.startswith("http://127.0.0.1:") and metrics_url.endswith("/metrics")
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="noop", inputs={"n.input": [1]}))

        async def completed() -> bool:
            return await job_is(store, job_id, "completed") is not None

        await poll_store(completed, timeout_s=30)
    finally:
        await store.close()
    async with httpx.AsyncClient() as http:
        answer = await http.get(metrics_url)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        found = samples(answer.text)
        assert value(found, "weirflow_queue_jobs", queue="default", status="completed") == 1
        assert (
            value(found, "weirflow_queue_attempts_total", queue="default", flow="noop", outcome="completed")
            == 1
        )
        assert (await http.get(metrics_url.replace("/metrics", "/other"))).status_code == 404


def test_metrics_beyond_loopback_need_api_keys(tmp_path: Path) -> None:
    args = ("worker", "--flows", FLOWS_MODULE, "--store", f"sqlite:///{tmp_path / 'w.db'}")
    done = cli(*args, "--metrics-port", "0", "--metrics-host", "0.0.0.0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --metrics-host '0.0.0.0': serving metrics beyond loopback needs API keys "
        "(set WEIRFLOW_API_KEYS; scrapes then send Authorization: Bearer KEY)"
    ]
    assert not (tmp_path / "w.db").exists()  # refused before anything was made


async def test_with_api_keys_a_scrape_needs_a_key() -> None:
    from weirflow.durable.metrics_http import start_metrics_server

    metrics = QueueMetrics()
    server, task, url = await start_metrics_server(metrics, host="127.0.0.1", port=0, api_keys={"k1": "read"})
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).status_code == 401
            assert (await http.get(url, headers={"Authorization": "Bearer wrong"})).status_code == 401
            good = await http.get(url, headers={"Authorization": "Bearer k1"})
            assert good.status_code == 200 and "weirflow_queue_attempts" in good.text
    finally:
        server.should_exit = True
        await task


async def test_serve_with_a_store_and_workers_exports_the_queues(tmp_path: Path) -> None:
    with live_server(FLOWS_MODULE, store=f"sqlite:///{tmp_path / 's.db'}", workers=1) as live:
        async with httpx.AsyncClient(base_url=live.url) as http:
            submitted = await http.post("/api/store/jobs", json={"flow": "noop", "inputs": {"n.input": [1]}})
            assert submitted.status_code == 201, submitted.text
            job_id = submitted.json()["id"]

            async def completed() -> bool:  # (run by the server's worker, on its own thread)
                return (await http.get(f"/api/store/jobs/{job_id}")).json()["status"] == "completed"

            await poll_store(completed, timeout_s=30)
            found = samples((await http.get("/metrics")).text)
    assert value(found, "weirflow_queue_jobs", queue="default", status="completed") == 1
    assert attempts(found, "noop", "completed") == 1
    assert any(
        name.startswith("weirflow_slot_") or name == "weirflow_jobs" for name, _ in found
    )  # and the engine's


def test_a_metrics_port_that_is_taken_is_one_line_and_exit_2() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = cli("worker", "--flows", FLOWS_MODULE, "--store", "memory://", "--metrics-port", str(port))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: --metrics-port {port}: cannot listen on 127.0.0.1:{port}: ")
