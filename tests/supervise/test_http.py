"""``/api/pipelines`` on a live server, through ``wf.Client`` and ``weirflow pipelines``."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

import weirflow as wf
from tests.server.conftest import Live, live_server
from weirflow.cli.app import app
from weirflow.supervise import load_supervise_settings

FLOWS = "tests.supervise.flows"


@pytest.fixture(scope="module")
def served() -> Iterator[Live]:
    with live_server(flows=FLOWS) as live:
        yield live


def test_the_pipeline_routes_end_to_end(served: Live) -> None:
    with wf.Client(served.url) as client:
        p = client.start_pipeline("echo", {"echo.input": [1, 2]}, name="h1")
        assert (p.name, p.state, p.restarts) == ("h1", "running", 0)
        assert p.id in [q.id for q in client.pipelines()]
        got: list[Any] = []
        while len(got) < 2:
            got += client.pipeline_results(p.id, wait_s=5).items
        assert got == [1, 2]
        assert client.send_pipeline(p.id, "echo.input", "a", "b") == 2
        paused = client.pause_pipeline(p.id)
        assert paused.state == "paused"
        with pytest.raises(wf.PipelineStateError) as conflict:
            client.pause_pipeline(p.id)
        assert conflict.value.status == 409  # type: ignore[attr-defined]
        assert client.resume_pipeline(p.id).state == "running"
        page = client.pipeline_results(p.id, max_items=1, wait_s=5)
        assert page.items == ["a"]
        assert client.pipeline_results(p.id, wait_s=5).items == ["b"]
        shown = client.pipeline(p.id)
        assert shown.health.interval_s > 0
        stopped = client.stop_pipeline(p.id)
        assert stopped.state == "stopped"
        assert stopped.last_exit is not None
        assert stopped.last_exit.code == 0


def test_typed_errors_answer_with_their_status(served: Live) -> None:
    r = served.client.get("/api/pipelines/nope")
    assert r.status_code == 404
    assert r.json()["error"] == "PipelineNotFound"
    r = served.client.post("/api/pipelines", json={"flow": "nope"})
    assert r.status_code == 422
    assert "no flow named 'nope'" in r.json()["detail"]
    r = served.client.post("/api/pipelines", json={"flow": "echo", "restart": "sometimes"})
    assert r.status_code == 422
    p = served.client.post("/api/pipelines", json={"flow": "echo"}).json()
    r = served.client.post(f"/api/pipelines/{p['id']}/input", json={"slot": "echo.nope", "items": [1]})
    assert r.status_code == 422
    assert r.json()["error"] == "InvalidCommand"
    r = served.client.post(f"/api/pipelines/{p['id']}/resume")
    assert r.status_code == 409
    os.kill(p["pid"], signal.SIGSTOP)
    try:
        r = served.client.post(
            f"/api/pipelines/{p['id']}/input", json={"slot": "echo.input", "items": [1], "timeout_s": 0}
        )
        assert r.status_code == 504
        assert r.json()["error"] == "CommandTimeout"
    finally:
        os.kill(p["pid"], signal.SIGCONT)
    r = served.client.post(f"/api/pipelines/{p['id']}/input", json={"slot": "echo.input", "items": ["ok"]})
    assert r.status_code == 202  # and it keeps serving
    assert served.client.delete(f"/api/pipelines/{p['id']}").json()["state"] == "stopped"


def test_a_full_slot_answers_429_with_retry_after_and_what_was_accepted(served: Live) -> None:
    p = served.client.post("/api/pipelines", json={"flow": "stuck"}).json()
    try:
        r = served.client.post(
            f"/api/pipelines/{p['id']}/input", json={"slot": "s.inp", "items": [1, 2, 3, 4], "timeout_s": 0.5}
        )
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
        # one item is being handled (for ever), one waits in the slot's room for one
        assert r.json()["accepted"] == 2
    finally:
        served.client.delete(f"/api/pipelines/{p['id']}", params={"grace_s": 0.2})


def test_metrics_include_the_supervisors(served: Live) -> None:
    text = served.client.get("/metrics").text
    assert "weirflow_pipelines{" in text
    assert "weirflow_supervise_restarts_total" in text or "weirflow_supervise_restarts" in text


def test_the_cli(served: Live) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["pipelines", "start", "echo", "-i", "echo.input=41", "--server", served.url])
    assert out.exit_code == 0, out.output
    pid = out.output.strip()
    listed = runner.invoke(app, ["pipelines", "list", "--json", "--server", served.url])
    assert pid in [p["id"] for p in json.loads(listed.output)]
    got = runner.invoke(app, ["pipelines", "results", pid, "--wait-s", "5", "--server", served.url])
    assert got.exit_code == 0
    assert got.output.splitlines() == ["41"]
    shown = runner.invoke(app, ["pipelines", "show", pid, "--json", "--server", served.url])
    assert json.loads(shown.output)["state"] == "running"
    assert runner.invoke(app, ["pipelines", "pause", pid, "--server", served.url]).exit_code == 0
    again = runner.invoke(app, ["pipelines", "pause", pid, "--server", served.url])
    assert again.exit_code == 2
    assert again.output.startswith("error: ") and again.output.count("\n") == 1
    assert runner.invoke(app, ["pipelines", "resume", pid, "--server", served.url]).exit_code == 0
    stopped = runner.invoke(app, ["pipelines", "stop", pid, "--json", "--server", served.url])
    assert json.loads(stopped.output)["state"] == "stopped"
    missing = runner.invoke(app, ["pipelines", "show", "nope", "--server", served.url])
    assert missing.exit_code == 2
    assert missing.output == "error: no pipeline 'nope'\n"


def test_bad_supervisor_settings_are_one_line_and_exit_2() -> None:
    out = CliRunner().invoke(app, ["serve", "--flows", FLOWS, "--health-failures", "0"])
    assert out.exit_code == 2
    assert out.output.startswith("error: --health-failures:")
    assert out.output.count("\n") == 1
    with pytest.raises(wf.SuperviseError):
        load_supervise_settings(grace_s=-1)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_sigterm_to_weirflow_serve_stops_every_pipeline_within_grace() -> None:
    import httpx

    from tests.processes import Exits, running
    from tests.server.test_cli_serve import _lines, _serve

    grace_s = 1.0
    with running(_serve("--flows", FLOWS, "--port", "0", "--grace-s", str(grace_s))) as proc:
        url = next(line for line in _lines(proc.stdout) if "listening on" in line).split()[3]
        with httpx.Client(base_url=url, timeout=60) as client:
            pids = []
            for i in range(5):
                body = {"flow": "ticker", "inputs": {"src.start": [-1]}} if i % 2 else {"flow": "echo"}
                r = client.post("/api/pipelines", json=body)
                assert r.status_code == 201
                pids.append(r.json()["pid"])
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert set(pids) <= {c.pid for c in tree}
        # the bound is timed from the signal to the end of the last pipeline's process (grace +
        # 0.2-0.35 s at load 12); the server's own exit comes after (0.15 s more)
        with Exits(pids) as exits:
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            ended = exits.wait(timeout_s=30)
        took_s = max(ended.values()) - t0
        assert took_s <= grace_s + 1, took_s
        proc.wait(timeout=30)
        assert time.monotonic() - t0 <= grace_s + 1 + 1.0  # and the server's own exit
        assert all(gone(pid) for pid in pids)
        # multiprocessing's resource tracker ends once it sees its parent gone
        _, alive = psutil.wait_procs(tree, timeout=5)
        assert alive == []


def test_dead_letters_of_a_crashed_child_over_http_and_the_cli(served: Live, tmp_path: Path) -> None:
    log, once = str(tmp_path / "work.log"), str(tmp_path / "kill.once")
    with wf.Client(served.url) as client:
        p = client.start_pipeline("work", restart="temporary")
        client.pause_pipeline(p.id)  # both wait in the slot: the first handler kills its child
        sent = [{"i": i, "log": log, "kill": "during", "once": once} for i in range(2)]
        assert client.send_pipeline(p.id, "w.inp", *sent) == 2
        assert client.pipeline(p.id).unacked == 2
        client.resume_pipeline(p.id)
        # the server runs on another thread's loop and HTTP has no wait for a state: bounded polling
        deadline = time.monotonic() + 30
        while client.pipeline(p.id).state != "stopped":
            assert time.monotonic() < deadline, client.pipeline(p.id)
            time.sleep(0.05)
        page = client.pipeline_dead_letters(p.id)
        assert [(d.seq, d.slot, d.item, d.reason) for d in page.items] == [
            (1, "w.inp", sent[0], "child_crashed"),
            (2, "w.inp", sent[1], "child_crashed"),
        ]
        assert page.items[0].error is not None and "SIGKILL" in page.items[0].error
        assert (page.total, page.dropped) == (2, 0)
        info = client.pipeline(p.id)
        assert (info.dead_letters, info.unacked) == (2, 0)
    assert served.client.get("/api/pipelines/nope/dead-letters").status_code == 404
    runner = CliRunner()
    out = runner.invoke(app, ["pipelines", "dead-letters", p.id, "--json", "--server", served.url])
    assert out.exit_code == 0, out.output
    assert [d["reason"] for d in json.loads(out.stdout)["items"]] == ["child_crashed"] * 2
    out = runner.invoke(app, ["pipelines", "dead-letters", p.id, "--server", served.url])
    assert out.exit_code == 0 and "child_crashed" in out.stdout and "2 dead letter(s)" in out.stdout
    out = runner.invoke(app, ["pipelines", "dead-letters", "nope", "--server", served.url])
    assert out.exit_code == 2 and "Traceback" not in out.output
