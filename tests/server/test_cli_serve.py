"""``weirflow serve`` in a subprocess: refuses unsafe binds, prints where it listens, stops on Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import running
from tests.server.conftest import FLOW_DIR, SERVED

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60  # a failure bound: `weirflow serve` took over 20 s to listen at load 15-17


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIRFLOW_")}
    return {**env, **extra}


def _weirflow(*args: str, **env: str) -> subprocess.Popen[str]:
    """``weirflow ARGS`` run from the repository's root without the caller's ``WEIRFLOW_*``
    settings (``env`` added), its output piped (text)."""
    return subprocess.Popen(
        [sys.executable, "-m", "weirflow", *args],
        cwd=ROOT,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _serve(*args: str, **env: str) -> subprocess.Popen[str]:
    return _weirflow("serve", *args, **env)


def _lines(stream: object) -> Iterator[str]:
    """Lines of a pipe, with a timeout per line (a stuck server fails the test, not hangs it)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while (line := lines.get(timeout=WAIT_S)) is not None:
        yield line


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])
def test_refuses_a_non_loopback_address_without_keys(host: str) -> None:
    proc = _serve("--flows", SERVED, "--host", host)
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: refusing to listen on {host} without API keys")


def test_a_malformed_key_list_is_refused_with_a_clear_message() -> None:
    proc = _serve("--flows", SERVED, WEIRFLOW_API_KEYS="k1:admin,k2")
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 2
    assert err == "error: WEIRFLOW_API_KEYS: entry 2 must look like KEY:ROLE (ROLE is admin or read)\n"


def test_bad_flows_are_refused() -> None:
    proc = _serve("--flows", "tests.server.no_such_module")
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 2
    assert err.startswith("error: cannot import flows module 'tests.server.no_such_module'")


def test_serves_prints_where_and_what_and_stops_on_ctrl_c() -> None:
    with running(_serve("--flows", FLOW_DIR, "--port", "0")) as proc:
        lines = _lines(proc.stdout)
        assert next(lines) == "weirflow: serving 1 flow(s): echo"
        listening = next(lines)
        assert listening.startswith("weirflow: listening on http://127.0.0.1:")
        url = listening.split()[3]
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            started = client.post("/api/jobs", json={"flow": "echo", "keep_open": True})
            assert started.status_code == 201
        proc.send_signal(signal.SIGINT)
        assert list(lines) == ["weirflow: stopped"]
        assert proc.wait(timeout=WAIT_S) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""


def test_workers_without_a_store_are_refused_naming_what_was_given() -> None:
    proc = _serve("--flows", SERVED, "--workers", "2")
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 2
    assert err == "error: --workers needs a store to take jobs from: pass --store URL\n"
    proc = _serve("--flows", SERVED, WEIRFLOW_WORKERS="2")
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 2
    assert err == "error: WEIRFLOW_WORKERS needs a store to take jobs from: set WEIRFLOW_STORE (or --store)\n"


def test_a_new_sqlite_store_is_created_and_said_so(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with running(_serve("--flows", FLOW_DIR, "--port", "0", "--store", f"sqlite:///{path}")) as proc:
        assert next(_lines(proc.stdout)).startswith("weirflow: serving")
        assert path.exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT_S) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == f"weirflow: creating the store {path}\n"


@pytest.mark.parametrize("bad", ["[::1", "[fd00::1]:8080", "[10.0.0.5]", "a.example.com:80"])
def test_a_malformed_allowed_host_is_one_line_naming_the_flag(bad: str) -> None:
    proc = _serve("--flows", SERVED, "--allowed-hosts", f"a.example.com,{bad}")
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: --allowed-hosts: entry 2 ({bad!r}) must be"), err


def test_allowed_hosts_given_as_ip_literals_admit_their_host_headers() -> None:
    with running(
        _serve("--flows", FLOW_DIR, "--port", "0", "--allowed-hosts", "[FD00:0::1],Proxy.Example.")
    ) as proc:
        lines = _lines(proc.stdout)
        next(lines)
        url = next(lines).split()[3]
        with httpx.Client(base_url=url, timeout=10) as client:
            for host in ("[fd00::0001]:8443", "[fd00::1]", "proxy.example", "PROXY.example.:443"):
                assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
            assert client.get("/healthz", headers={"Host": "[fd00::2]:8443"}).status_code == 421
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT_S) == 0


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--keep-finished", "0"], {}), ([], {"WEIRFLOW_KEEP_FINISHED": "0"})],
    ids=["flag", "env"],
)
def test_keep_finished_bounds_the_finished_pipelines_a_server_keeps(
    args: list[str], env: dict[str, str]
) -> None:
    """``--keep-finished 0``: a stopped pipeline is forgotten when the next one starts (the
    default keeps 100)."""
    with running(_serve("--flows", "tests.supervise.flows", "--port", "0", *args, **env)) as proc:
        lines = _lines(proc.stdout)
        next(lines)
        url = next(lines).split()[3]
        with httpx.Client(base_url=url, timeout=WAIT_S) as client:
            first = client.post("/api/pipelines", json={"flow": "echo"}).json()["id"]
            assert client.delete(f"/api/pipelines/{first}").json()["state"] == "stopped"
            second = client.post("/api/pipelines", json={"flow": "echo"}).json()["id"]
            assert [p["id"] for p in client.get("/api/pipelines").json()] == [second]
            assert client.get(f"/api/pipelines/{first}").status_code == 404
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT_S) == 0


def test_the_access_log_goes_to_stderr_and_stdout_holds_only_where_it_listens() -> None:
    """``--access-log`` lines are logs: on stderr with every other log (uvicorn's default put
    them on stdout, between the lines that say where the server listens)."""
    with running(_serve("--flows", FLOW_DIR, "--port", "0", "--access-log")) as proc:
        lines = _lines(proc.stdout)
        assert next(lines).startswith("weirflow: serving")
        url = next(lines).split()[3]
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/api/flows").status_code == 200
        proc.send_signal(signal.SIGINT)
        assert list(lines) == ["weirflow: stopped"]
        assert proc.wait(timeout=WAIT_S) == 0
        assert proc.stderr is not None
        assert '"GET /api/flows HTTP/1.1" 200' in proc.stderr.read()


def test_a_store_file_that_is_not_a_database_is_exit_2_and_one_line(tmp_path: Path) -> None:
    """A store that cannot be opened at all is bad usage for ``serve`` as for ``worker``."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database, but long enough to be read as one and refused\n" * 100)
    proc = _serve("--flows", FLOW_DIR, "--port", "0", "--store", f"sqlite:///{path}")
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 2, err
    assert out == "" and err.count("\n") == 1
    assert err.startswith("error: cannot open the store: ") and "file is not a database" in err
