"""Pipeline results over HTTP: nothing is lost to a client that goes away, consuming needs an
admin key (a read key peeks), a full slot is ``SlotFullError`` and finished pipelines can be
removed. A live server with real pipeline processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

import weirflow as wf
from tests.processes import running
from tests.server.conftest import Live, live_server
from tests.server.test_cli_serve import _lines, _weirflow
from weirflow.cli.app import app

FLOWS = "tests.supervise.flows"
ADMIN = {"Authorization": "Bearer adminkey"}
READ = {"Authorization": "Bearer readkey"}


@pytest.fixture(scope="module")
def served() -> Iterator[Live]:
    with live_server(flows=FLOWS, api_keys="adminkey:admin,readkey:read", headers=ADMIN) as live:
        yield live


def _echo(live: Live) -> str:
    r = live.client.post("/api/pipelines", json={"flow": "echo"})
    assert r.status_code == 201, r.text
    pipeline_id: str = r.json()["id"]
    return pipeline_id


def _send(live: Live, pipeline_id: str, *items: object) -> None:
    r = live.client.post(
        f"/api/pipelines/{pipeline_id}/input", json={"slot": "echo.input", "items": list(items)}
    )
    assert r.status_code == 202, r.text


def _results(
    live: Live,
    pipeline_id: str,
    wait_s: float = 5.0,
    peek: str = "false",
    before: str | None = None,
    **headers: str,
) -> httpx.Response:
    params: dict[str, str | float] = {"wait_s": wait_s, "peek": peek}
    if before is not None:
        params["before"] = before
    return live.client.get(f"/api/pipelines/{pipeline_id}/results", params=params, headers=headers)


def test_a_wait_whose_client_gave_up_consumes_nothing(served: Live) -> None:
    p = _echo(served)
    with (
        httpx.Client(base_url=served.url, headers=ADMIN, timeout=2.0) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.get(f"/api/pipelines/{p}/results", params={"wait_s": 10})
    # the abandoned wait is still running on the server when this output arrives
    _send(served, p, "kept")
    assert _results(served, p).json() == {"items": ["kept"], "remaining": 0, "offset": 0}
    served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def test_ctrl_c_on_results_follow_exits_130_and_loses_nothing(served: Live) -> None:
    p = _echo(served)
    _send(served, p, "first")
    results = ("pipelines", "results", p, "--follow", "--wait-s", "10")
    with running(_weirflow(*results, "--server", served.url, "--api-key", "adminkey")) as proc:
        assert next(_lines(proc.stdout)) == '"first"'  # printed: it is now in its next wait
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    _send(served, p, "second")
    assert _results(served, p).json()["items"] == ["second"]
    served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def test_ctrl_c_while_results_prints_a_page_consumes_only_what_was_printed(served: Live) -> None:
    # ten outputs of 30 kB: one page, but more than the pipe to this test holds, which reads
    # one line and then nothing: the command is blocked printing the page when Ctrl-C comes
    p = _echo(served)
    sent = [f"{i:02d}" + "x" * 30_000 for i in range(10)]
    _send(served, p, *sent)
    while _results(served, p, peek="true").json()["remaining"] < len(sent):
        _results(served, p, peek="true", wait_s=1)  # (each waits for a new output)
    results = ("pipelines", "results", p, "--follow", "--wait-s", "10")
    with running(_weirflow(*results, "--server", served.url, "--api-key", "adminkey")) as proc:
        first = _one_line(proc)
        assert json.loads(first.split("\n")[0]) == sent[0]
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 130
    lines = (first + rest).split("\n")
    assert lines[-1] == ""  # whole lines only: the line in hand was finished
    printed = [json.loads(line) for line in lines[:-1]]
    assert 1 <= len(printed) < len(sent) and printed == sent[: len(printed)]
    # what was printed was consumed, what was not is still there: nothing lost, nothing twice
    assert _results(served, p, wait_s=0).json()["items"] == sent[len(printed) :]
    served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def _one_line(proc: subprocess.Popen[str]) -> str:
    """The command's output up to its first newline (and what came with it), read from the
    pipe itself, the rest left in it (``communicate`` reads the pipe, not a file's buffer)."""
    got: list[bytes] = []

    def read() -> None:
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        while not got or b"\n" not in got[-1]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            got.append(b"".join(got[-1:]) + chunk if got else chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert got and b"\n" in got[-1], "the command printed no line"
    return got[-1].decode()


def test_a_read_key_peeks_but_cannot_consume(served: Live) -> None:
    p = _echo(served)
    _send(served, p, "x1")
    for _ in range(2):  # looking twice finds it twice
        peeked = _results(served, p, peek="true", **READ)
        assert peeked.status_code == 200
        assert peeked.json() == {"items": ["x1"], "remaining": 1, "offset": 0}
    refused = _results(served, p, **READ)
    assert refused.status_code == 403
    assert "'admin'" in refused.json()["detail"]
    with wf.Client(served.url, api_key="readkey") as reader:
        assert reader.pipeline_results(p, peek=True).items == ["x1"]
        with pytest.raises(wf.RequestError) as e:
            reader.pipeline_results(p)
        assert e.value.status == 403
    assert _results(served, p).json() == {"items": ["x1"], "remaining": 0, "offset": 0}  # all there
    served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def test_results_on_the_command_line_prints_and_consumes_with_an_admin_key_only(served: Live) -> None:
    p = _echo(served)
    _send(served, p, "a", "b", "c")
    while _results(served, p, peek="true").json()["remaining"] < 3:
        _results(served, p, peek="true", wait_s=1)
    runner = CliRunner()
    args = ["pipelines", "results", p, "--max", "2", "--wait-s", "0", "--server", served.url]
    refused = runner.invoke(app, [*args, "--api-key", "readkey"])
    assert refused.exit_code == 2 and refused.stdout == ""  # found out before printing anything
    assert refused.output.startswith("error: ") and refused.output.count("\n") == 1
    out = runner.invoke(app, [*args, "--api-key", "adminkey"])
    assert out.exit_code == 0, out.output
    assert out.stdout.split() == ['"a"', '"b"', '"c"']  # two pages, each consumed once printed
    after = _results(served, p, peek="true").json()
    assert after == {"items": [], "remaining": 0, "offset": 3}
    served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def test_a_consumer_confirms_what_it_peeked_and_a_second_confirmation_takes_nothing(served: Live) -> None:
    p = _echo(served)
    _send(served, p, "a", "b", "c")
    with wf.Client(served.url, api_key="adminkey") as client:
        page = client.pipeline_results(p, peek=True, wait_s=5)
        while page.remaining < 3:
            page = client.pipeline_results(p, peek=True, wait_s=1)
        assert (page.items, page.offset) == (["a", "b", "c"], 0)
        for _ in range(2):  # the answer of the first was lost, say: asking again changes nothing
            done = client.pipeline_results(p, max_items=2, before=page.offset + 2)
        assert (done.items, done.remaining, done.offset) == ([], 1, 2)
        rest = client.pipeline_results(p, peek=True)
        assert (rest.items, rest.offset) == (["c"], 2)
    r = _results(served, p, peek="true", before="1")  # (peek and before)
    assert r.status_code == 422
    served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def test_a_consuming_get_from_another_site_is_refused(served: Live) -> None:
    p = _echo(served)
    r = _results(served, p, wait_s=0, **{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.test"})
    assert r.status_code == 403
    served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def test_a_full_pipeline_slot_is_slot_full_error_in_the_client(served: Live) -> None:
    p = served.client.post("/api/pipelines", json={"flow": "stuck"}).json()["id"]
    try:
        with wf.Client(served.url, api_key="adminkey") as client, pytest.raises(wf.SlotFullError) as full:
            client.send_pipeline(p, "s.inp", 1, 2, 3, 4, timeout_s=0.5)
        assert full.value.status == 429  # type: ignore[attr-defined]
        assert full.value.accepted == 2  # type: ignore[attr-defined]
        assert full.value.slot == "s.inp"
    finally:
        served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def test_a_full_send_window_is_named_with_its_own_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # "stuck" holds its first item for ever and has room for one more in its slot (capacity 1):
    # with a send window of 2, the third item is refused by the window, not by the slot
    monkeypatch.setenv("WEIRFLOW_UNACKED_CAPACITY", "2")
    with live_server(flows=FLOWS) as live:
        p = live.client.post("/api/pipelines", json={"flow": "stuck"}).json()["id"]
        r = live.client.post(
            f"/api/pipelines/{p}/input", json={"slot": "s.inp", "items": [1, 2, 3], "timeout_s": 0.5}
        )
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        body = r.json()
        assert (body["error"], body["capacity"], body["unacked"], body["accepted"]) == (
            "SendWindowFullError",
            2,
            2,
            2,
        )
        assert "send window is full" in body["detail"] and "unacked_capacity 2" in body["detail"]
        with wf.Client(live.url) as client, pytest.raises(wf.SlotFullError) as full:  # one retry loop
            client.send_pipeline(p, "s.inp", 3, timeout_s=0.2)
        e = full.value
        assert isinstance(e, wf.SendWindowFullError) and isinstance(e, wf.PipelineStateError)
        assert (e.status, e.slot, e.capacity, e.unacked, e.state) == (429, "s.inp", 2, 2, "full")  # type: ignore[attr-defined]
        live.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def test_a_finished_pipeline_can_be_removed_a_running_one_cannot(served: Live) -> None:
    p = _echo(served)
    r = served.client.delete(f"/api/pipelines/{p}", params={"forget": "true"})
    assert r.status_code == 409
    assert r.json()["error"] == "PipelineStateError"
    assert served.client.get(f"/api/pipelines/{p}").json()["state"] == "running"  # not stopped either
    runner = CliRunner()
    refused = runner.invoke(app, ["pipelines", "rm", p, "--server", served.url, "--api-key", "adminkey"])
    assert refused.exit_code == 2
    assert refused.output.startswith("error: ") and refused.output.count("\n") == 1
    assert served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2}).json()["state"] == "stopped"
    removed = runner.invoke(
        app, ["pipelines", "rm", p, "--json", "--server", served.url, "--api-key", "adminkey"]
    )
    assert removed.exit_code == 0, removed.output
    assert served.client.get(f"/api/pipelines/{p}").status_code == 404
    assert p not in [q["id"] for q in served.client.get("/api/pipelines").json()]
    q = _echo(served)
    with wf.Client(served.url, api_key="adminkey") as client:
        client.stop_pipeline(q, grace_s=0.2)
        assert client.forget_pipeline(q).state == "stopped"
        with pytest.raises(wf.PipelineNotFound):
            client.pipeline(q)


def test_a_ui_session_consumes_only_with_its_csrf_token(served: Live) -> None:
    p = _echo(served)
    _send(served, p, "y")
    with httpx.Client(base_url=served.url, timeout=10) as browser:
        assert browser.post("/ui/login", json={"key": "adminkey"}).status_code == 200
        csrf = browser.get("/ui/session").json()["csrf"]
        url = f"/api/pipelines/{p}/results"
        assert browser.get(url, params={"wait_s": 5, "peek": "true"}).json()["items"] == ["y"]
        refused = browser.get(url)
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["detail"]
        assert browser.get(url, headers={"X-CSRF-Token": csrf}).json()["items"] == ["y"]
    served.client.delete(f"/api/pipelines/{p}", params={"grace_s": 0.2})


def test_the_async_client_peeks_and_forgets(served: Live) -> None:
    async def use() -> None:
        async with wf.AsyncClient(served.url, api_key="adminkey") as client:
            p = await client.start_pipeline("echo", {"echo.input": ["z"]})
            assert (await client.pipeline_results(p.id, wait_s=5, peek=True)).items == ["z"]
            assert (await client.pipeline_results(p.id)).items == ["z"]
            with pytest.raises(wf.PipelineStateError):
                await client.forget_pipeline(p.id)
            await client.stop_pipeline(p.id, grace_s=0.2)
            assert (await client.forget_pipeline(p.id)).id == p.id
            with pytest.raises(wf.PipelineNotFound):
                await client.pipeline(p.id)

    asyncio.run(use())
