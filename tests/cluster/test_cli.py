"""``weirflow worker --registry`` as a node, and ``weirflow nodes list``, as real commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.durable.procs import WorkerProcess, cli
from tests.redisserver import free_port, started_server
from weirflow.cluster import Registry

Make = Callable[..., Registry]


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.slow  # a worker process and several commands: seconds on 2 cores
async def test_a_worker_with_a_registry_is_a_node_with_its_running_count(
    tmp_path: Path, redis_url: str, registries: Make
) -> None:
    watcher = registries(redis_url)
    await watcher.start()
    store = f"sqlite:///{tmp_path / 'w.db'}"
    # (queue gpu: the queue a worker of pool gpu serves when given no --queue)
    slow = cli("jobs", "submit", "one", "-i", 'a.item={"sleep_s": 60}', "--store", store, "--queue", "gpu")
    assert slow.returncode == 0, slow.stderr
    args = ("--registry", redis_url, "--pool", "gpu", "--labels", "zone=a", "--capacity", "2")
    with WorkerProcess(store, tmp_path / "w.log", "--shutdown-grace", "0.2", *args) as worker:

        def busy() -> bool:
            nodes = watcher.nodes("gpu")
            return len(nodes) == 1 and nodes[0].running == 1

        await watcher.wait_for(busy, timeout_s=30)
        (node,) = watcher.nodes("gpu")
        assert (node.state, node.capacity, dict(node.labels)) == ("up", 2, {"zone": "a"})
        assert watcher.select("gpu", {"zone": "a"}) == node  # 1 of 2 slots free

        listed = cli("nodes", "list", "--registry", redis_url, "--json")
        assert listed.returncode == 0, listed.stderr
        (row,) = json.loads(listed.stdout)
        assert (row["id"], row["pool"], row["running"], row["capacity"]) == (node.id, "gpu", 1, 2)
        table = cli("nodes", "list", "--registry", redis_url, "--pool", "gpu")
        assert table.returncode == 0 and node.id in table.stdout and "zone=a" in table.stdout
        assert cli("nodes", "list", "--registry", redis_url, "--pool", "cpu", "--json").stdout.strip() == "[]"

        assert worker.terminate() == 0, worker.output()
    await watcher.wait_for(lambda: watcher.nodes() == [], timeout_s=5)  # removed at exit
    assert watcher.cache.records[node.id].state == "down"


def test_bad_node_options_and_an_unreachable_registry_are_one_error_line(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'w.db'}"
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    bad = cli(
        "worker", "--flows", "tests.durable.flows", "--store", store, "--registry", url, "--labels", "nolabel"
    )
    assert bad.returncode == 2
    assert "--labels 'nolabel'" in one_error_line(bad.stderr)
    down = cli("nodes", "list", "--registry", url)
    assert down.returncode == 2  # as `weirflow jobs` for a store it cannot open
    line = one_error_line(down.stderr)
    assert "hunter2-secret" not in line + down.stdout
    assert f"redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in line  # which registry
    worker = cli("worker", "--flows", "tests.durable.flows", "--store", store, "--registry", url)
    assert worker.returncode == 1
    assert "hunter2-secret" not in worker.stderr + worker.stdout
    assert one_error_line(worker.stderr.split("\n", 1)[1])  # after the worker's banner line


def test_nodes_list_with_a_wrong_password_is_exit_2_naming_the_registry_not_the_password() -> None:
    server = started_server()
    try:
        assert cli("nodes", "list", "--registry", server.url(0), "--json").returncode == 0
        admin = redis.Redis.from_url(server.url(0))
        admin.config_set("requirepass", "right-pw")
        admin.close()
        for url in (f"redis://:wrong-pw@127.0.0.1:{server.port}/0", f"redis://127.0.0.1:{server.port}/0"):
            refused = cli("nodes", "list", "--registry", url)
            assert refused.returncode == 2, refused.stderr
            line = one_error_line(refused.stderr)
            assert "wrong-pw" not in line + refused.stdout
            assert "registry redis://" in line and f"127.0.0.1:{server.port}/0" in line
    finally:
        server.destroy()


@pytest.mark.slow  # several commands: seconds on 2 cores
async def test_jobs_submit_with_a_pool_assigns_the_job_to_a_node_through_the_registry(
    tmp_path: Path, redis_url: str, registries: Make
) -> None:
    reg = registries(redis_url)
    await reg.start()
    await reg.register("a1", pool="gpu", capacity=1, labels={"zone": "a"})
    await reg.register("b1", pool="gpu", capacity=1, labels={"zone": "b"})
    store = f"sqlite:///{tmp_path / 'w.db'}"
    args = ("--store", store, "--registry", redis_url, "--pool", "gpu")

    def submitted(*more: str) -> dict[str, object]:
        done = cli("jobs", "submit", "one", "-i", "a.item={}", *args, *more)
        assert done.returncode == 0, done.stderr
        shown = cli("jobs", "list", "--store", store, "--json")
        (job,) = [j for j in json.loads(shown.stdout) if j["id"] == done.stdout.strip()]
        return dict(job)

    first = submitted("--labels", "zone=b")
    assert (first["node"], first["queue"]) == ("b1", "gpu")  # the pool's queue
    second = submitted("--labels", "zone=b", "--queue", "elsewhere")  # b1 is full: unassigned
    assert (second["node"], second["queue"]) == (None, "elsewhere")
    third = submitted()
    assert third["node"] == "a1"

    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    down = cli(
        "jobs", "submit", "one", "-i", "a.item={}", "--store", store, "--registry", url, "--pool", "gpu"
    )
    assert down.returncode == 0, down.stderr  # queued unassigned, as engine.submit does
    assert "queued unassigned" in down.stderr and "hunter2-secret" not in down.stderr + down.stdout


@pytest.mark.slow  # three commands
def test_jobs_submit_with_a_pool_but_no_registry_is_one_error_line(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'w.db'}"
    for flags, says in (
        (["--pool", "gpu"], "--pool needs --registry"),
        (["--labels", "zone=a"], "give --pool too"),
        (
            ["--pool", "gpu", "--registry", "redis://127.0.0.1:1/0", "--labels", "nolabel"],
            "--labels 'nolabel'",
        ),
    ):
        done = cli("jobs", "submit", "one", "-i", "a.item={}", "--store", store, *flags)
        assert done.returncode == 2 and says in one_error_line(done.stderr), (flags, done.stderr)
        assert done.stdout == ""
    assert not (tmp_path / "w.db").exists()  # nothing submitted
