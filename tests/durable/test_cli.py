"""``weirflow jobs ...`` and ``weirflow worker`` as real commands on a SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weirflow.durable import open_store

from .helpers import poll_store
from .procs import FLOWS_MODULE, WorkerProcess, cli

SHOW_KEYS = {
    "id",
    "flow",
    "status",
    "attempt",
    "error",
    "error_detail",
    "steps",
    "outputs",
    "dead_letters",
    "node",
}
STEP_KEYS = {
    "routine",
    "seq",
    "status",
    "attempt",
    "progress",
    "message",
    "started_at",
    "completed_at",
    "error",
    "worker",
    "traceback",
}


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.slow  # tens of seconds on 2 cores: run by scripts/test (CI), not by a plain pytest
def test_jobs_commands(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'w.db'}"
    done = cli(
        "jobs", "submit", "one", "--input", 'a.item={"x": 1}', "--store", store, "--flows", FLOWS_MODULE
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    again = cli(
        "jobs",
        "submit",
        "one",
        "-i",
        "a.item=2",
        "--store",
        store,
        "--idempotency-key",
        "k",
        "--priority",
        "3",
    )
    same = cli("jobs", "submit", "one", "-i", "a.item=3", "--store", store, "--idempotency-key", "k")
    assert again.stdout == same.stdout and again.returncode == 0

    shown = cli("jobs", "show", job_id, "--store", store, "--json")
    doc = json.loads(shown.stdout)
    assert doc == {
        "id": job_id,
        "flow": "one",
        "status": "queued",
        "attempt": 0,
        "error": None,
        "error_detail": None,
        "steps": [],
        "outputs": {},
        "dead_letters": [],
        "node": None,
    }
    listed = json.loads(cli("jobs", "list", "--store", store, "--json").stdout)
    assert [j["id"] for j in listed] == [again.stdout.strip(), job_id]
    assert listed[1]["inputs"] == {"a.item": [{"x": 1}]}
    table = cli("jobs", "list", "--store", store, "--status", "queued")
    assert job_id in table.stdout and "queued" in table.stdout
    page = cli("jobs", "list", "--store", store, "--flow", "one", "--offset", "1", "--json")
    assert [j["id"] for j in json.loads(page.stdout)] == [job_id]
    assert json.loads(cli("jobs", "list", "--store", store, "--flow", "other", "--json").stdout) == []

    assert cli("jobs", "cancel", job_id, "--store", store).stdout.split() == [job_id, "cancelled"]
    assert cli("jobs", "retry", job_id, "--from-start", "--store", store).stdout.split() == [job_id, "queued"]

    for args, message in [
        (("jobs", "show", "nope", "--store", store), "no job 'nope'"),
        (("jobs", "retry", job_id, "--store", store), "only a failed, cancelled or stalled job"),
        (("jobs", "submit", "one", "-i", "a.nope=1", "--store", store, "--flows", FLOWS_MODULE), "no slot"),
        (("jobs", "submit", "one", "-i", "a.item=not json", "--store", store), "not valid JSON"),
        (
            (
                "jobs",
                "submit",
                "one",
                "-i",
                "a.item=1",
                "-i",
                'a.item={"n": 18446744073709551616}',
                "--store",
                store,
            ),
            'inputs["a.item"][1]["n"]: integer 18446744073709551616 is out of range',
        ),
        (("jobs", "submit", "one", "-i", "a.item=NaN", "--store", store), 'inputs["a.item"][0]: nan is not'),
        (("jobs", "list", "--store", "mysql://x"), "unknown scheme"),
        (("jobs", "list", "--store", store, "--status", "odd"), "--status 'odd'"),
    ]:
        bad = cli(*args)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert message in one_error_line(bad.stderr)


def test_submit_of_a_flow_the_given_flows_lack_warns_and_queues_it(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'w.db'}"
    done = cli("jobs", "submit", "missing", "-i", "a.item=1", "--store", store, "--flows", FLOWS_MODULE)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "no flow named 'missing'" in warnings[0], done.stderr
    assert "Traceback" not in done.stderr
    job_id = done.stdout.strip()
    shown = json.loads(cli("jobs", "show", job_id, "--store", store, "--json").stdout)
    assert (shown["flow"], shown["status"]) == ("missing", "queued")


async def test_worker_runs_jobs_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = open_store(url)
    await store.open()
    try:
        quick = cli("jobs", "submit", "steps3", "-i", 'a.item={"n": 1}', "--store", url).stdout.strip()
        slow = cli("jobs", "submit", "one", "-i", 'a.item={"sleep_s": 60}', "--store", url).stdout.strip()

        async def state() -> bool:
            a, b = await store.get(quick), await store.get(slow)
            return a is not None and a.status == "completed" and b is not None and b.status == "running"

        with WorkerProcess(
            url, tmp_path / "w.log", "--shutdown-grace", "0.2", "--concurrency", "2"
        ) as worker:
            await poll_store(state, timeout_s=30)  # another process's work: poll the store
            assert worker.terminate() == 0, worker.output()
        record = await store.get(slow)
        assert record is not None and (record.status, record.attempt) == ("queued", 0)

        steps = json.loads(cli("jobs", "steps", quick, "--store", url, "--json").stdout)
        assert [(s["routine"], s["status"], s["progress"]) for s in steps] == [
            ("a", "completed", 100.0),
            ("b", "completed", 100.0),
            ("c", "completed", 100.0),
        ]
        doc = json.loads(cli("jobs", "show", quick, "--store", url, "--json").stdout)
        assert doc.keys() == SHOW_KEYS and doc["steps"][0].keys() == STEP_KEYS
        assert doc["status"] == "completed" and doc["attempt"] == 1
        text = cli("jobs", "show", quick, "--store", url).stdout
        assert "completed" in text and "nearly done" in text
    finally:
        await store.close()


@pytest.mark.parametrize(
    "store_url",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.slow),
        pytest.param("redis", marks=pytest.mark.slow),
    ],
    indirect=True,
)
def test_jobs_wait_exits_by_outcome_and_show_prints_the_traceback(store_url: str, tmp_path: Path) -> None:
    def submit(*args: str) -> str:
        done = cli("jobs", "submit", "one", *args, "--store", store_url)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    ok = submit("-i", 'a.item={"x": 1}')
    bad = submit("-i", 'a.item={"fail": true}', "--attempts", "1")
    parked = submit("-i", 'a.item={"x": 2}', "--queue", "nobody")  # no worker takes this queue
    with WorkerProcess(store_url, tmp_path / "w.log"):
        waited = cli("jobs", "wait", ok, "--store", store_url, "--timeout", "30", "--json")
        assert waited.returncode == 0, waited.stderr
        doc = json.loads(waited.stdout)
        assert doc.keys() == SHOW_KEYS and doc["status"] == "completed"
        assert (doc["outputs"], doc["dead_letters"]) == ({"a.out": [{"x": 1}]}, [])

        failed = cli("jobs", "wait", bad, "--store", store_url, "--timeout", "30")
        assert failed.returncode == 1, failed.stderr
        assert "ValueError: a failed on purpose" in failed.stdout
        assert "Traceback (most recent call last):" in failed.stdout

    shown = cli("jobs", "show", bad, "--store", store_url)
    assert shown.returncode == 0 and "Traceback (most recent call last):" in shown.stdout
    assert 'raise ValueError(f"{ctx.routine} failed on purpose")' in shown.stdout
    doc = json.loads(cli("jobs", "show", bad, "--store", store_url, "--json").stdout)
    assert doc["error_detail"].endswith("ValueError: a failed on purpose")
    assert doc["steps"][0]["traceback"] == doc["error_detail"]

    for args, code, message in [
        (("jobs", "wait", parked, "--timeout", "0.2"), 2, "is still queued after 0.2s"),
        (("jobs", "wait", "nope", "--timeout", "5"), 2, "no job 'nope'"),
        (("jobs", "wait", parked, "--timeout", "-1"), 2, "--timeout"),
    ]:
        got = cli(*args, "--store", store_url)
        assert got.returncode == code, (args, got.stdout, got.stderr)
        assert message in got.stderr and len(got.stderr.strip().splitlines()) == 1, got.stderr


@pytest.mark.parametrize(
    "command",
    [["list"], ["show", "abc"], ["steps", "abc"], ["wait", "abc"], ["retry", "abc"], ["cancel", "abc"]],
)
def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    p = cli("jobs", *command, "--store", f"sqlite:///{missing}")
    assert p.returncode == 2
    assert one_error_line(p.stderr).startswith(f"error: no store at {missing}")
    assert not (tmp_path / "nonexistent").exists()


def test_a_sqlite_url_with_options_is_refused_not_ignored(tmp_path: Path) -> None:
    p = cli("jobs", "list", "--store", f"sqlite:///{tmp_path / 'x.db'}?mode=ro")
    assert p.returncode == 2
    assert "takes no options ('mode=ro')" in one_error_line(p.stderr)
    assert list(tmp_path.iterdir()) == []


def test_submit_creates_the_store_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    p = cli("jobs", "submit", "one", "--input", 'a.item={"x": 1}', "--store", f"sqlite:///{path}")
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == [f"weirflow: creating the store {path}"]
    assert path.exists()
    again = cli("jobs", "list", "--store", f"sqlite:///{path}")
    assert again.returncode == 0 and again.stderr == ""
