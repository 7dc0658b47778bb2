"""Every command, fed bad arguments: exit 2 and one ``error:`` line on stderr, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from weirflow.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
WORDCOUNT = str(ROOT / "examples" / "wordcount.yaml")


@pytest.fixture
def latin1(tmp_path: Path) -> str:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    return str(path)


BAD = [
    (["--bogus"], "No such option: --bogus"),
    (["nosuch"], "No such command 'nosuch'"),
    (["run"], "Missing argument 'FLOW.yaml'"),
    (["run", "/nonexistent/flow.yaml"], "cannot read flow file"),
    (["run", "LATIN1"], "not a UTF-8 text file"),
    (["validate", "LATIN1"], "not a UTF-8 text file"),
    (["run", WORDCOUNT, "--input", "nosep"], "expected routine.slot=VALUE"),
    (["run", WORDCOUNT, "--input", "split.text=@"], "@ needs a file name"),
    (["run", WORDCOUNT, "--input", "split.text={oops"], "is not valid JSON"),
    (["run", WORDCOUNT, "--input", "nope.slot=1"], "has no slot 'nope.slot'"),
    (["run", WORDCOUNT, "--input", "split.text=1e999"], "split.text"),
    (["run", WORDCOUNT, "--timeout", "-1"], "Invalid value for '--timeout'"),
    (["demo", "--bogus"], "No such option: --bogus"),
    (["serve", "--log-level", "loud"], "Invalid value for '--log-level'"),
    (["serve", "--port", "99999"], "Invalid value for '--port'"),
    (["serve", "--port", "http"], "Invalid value for '--port'"),
    (["serve", "--flows", "examples", "--host", "0.0.0.0"], "refusing to listen on 0.0.0.0"),
    (["serve"], "no flows to serve"),
    (["worker"], "Missing option '--flows'"),
    (["worker", "--flows", "examples", "--concurrency", "0"], "Invalid value for '--concurrency'"),
    (
        ["worker", "--flows", "examples", "--alert-failure-rate", "2"],
        "Invalid value for '--alert-failure-rate'",
    ),
    (["worker", "--flows", "examples", "--alert-webhook", "nowhere"], "is not an http:// or https:// URL"),
    (["worker", "--flows", "tests.cli.no_such_module"], "tests.cli.no_such_module"),
    (["worker", "--flows", "examples", "--metrics-port", "70000"], "Invalid value for '--metrics-port'"),
    (
        ["worker", "--flows", "examples", "--metrics-port", "0", "--metrics-host", "0.0.0.0"],
        "--metrics-host '0.0.0.0': serving metrics beyond loopback needs API keys",
    ),
    (["worker", "--flows", "examples", "--store", "postgresql://wf:pw@/db"], "'postgresql://wf:***@/db'"),
    # a bad value is named by the flag it was given as (not its WEIRFLOW_* variable)
    (
        ["worker", "--flows", "examples", "--grace-s", "nan"],
        "error: --grace-s: Input should be a finite number",
    ),
    (
        ["worker", "--flows", "examples", "--health-interval-s", "-1"],
        "error: --health-interval-s: Input should",
    ),
    (
        ["serve", "--flows", "examples", "--grace-s", "nan"],
        "error: --grace-s: Input should be a finite number",
    ),
    (["serve", "--flows", "examples", "--warm", "-1"], "error: --warm: Input should"),
    (
        ["serve", "--flows", "examples", "--keep-finished", "-1"],
        "error: --keep-finished: Input should be greater than or equal to 0",
    ),
    (["serve", "--flows", "examples", "--keep-finished", "1.5"], "Invalid value for '--keep-finished'"),
    (["serve", "--flows", "examples", "--keep-finished", "many"], "Invalid value for '--keep-finished'"),
    (["serve", "--flows", "examples", "--registry", "http://x"], "error: --registry: must be a redis://"),
    (["worker", "--flows", "examples", "--pool", "gpu"], "--pool needs --registry URL"),
    (
        ["worker", "--flows", "examples", "--labels", "a=b", "--capacity", "3"],
        "--labels, --capacity need --registry",
    ),
    # a Redis database that is not a number is not silently db 0
    (
        ["serve", "--flows", "examples", "--registry", "redis://h:1/x"],
        "--registry: the database 'x' is not a number",
    ),
    (
        ["serve", "--flows", "examples", "--store", "redis://h:1/x"],
        "--store: store URL 'redis://h:1/x': the database",
    ),
    (
        ["worker", "--flows", "examples", "--store", "redis://:pw@h:1/x"],
        "'redis://:***@h:1/x': the database 'x'",
    ),
    (
        ["worker", "--flows", "examples", "--registry", "redis://h:1/db1"],
        "registry URL 'redis://h:1/db1': the database",
    ),
    (["jobs", "list", "--store", "redis://h:1/x"], "the database 'x' is not a number"),
    (["jobs", "show"], "Missing argument 'ID'"),
    (["jobs", "wait"], "Missing argument 'ID'"),
    (["jobs", "list", "--limit", "0"], "Invalid value for '--limit'"),
    # click's float type takes nan and the infinities: none of them is a setting (a lease of
    # inf is never renewed and never expires; a wait of inf overflowed the exit timer)
    *[
        (
            ["worker", "--flows", "examples", "--store", "memory://", flag, value],
            f"Invalid value for '{flag}'",
        )
        for flag in ("--lease", "--keep-completed", "--keep-failed", "--alert-running-over", "--alert-window")
        for value in ("inf", "nan")
    ],
    *[
        (["worker", "--flows", "examples", "--store", "memory://", flag, "-1"], f"Invalid value for '{flag}'")
        for flag in ("--keep-completed", "--keep-completed-count", "--keep-failed", "--alert-running-over")
    ],
    (["jobs", "wait", "0" * 32, "--store", "memory://", "--timeout", "inf"], "--timeout inf: expected"),
    (["jobs", "wait", "0" * 32, "--store", "memory://", "--timeout", "1e308"], "--timeout 1e+308: expected"),
    (["jobs", "wait", "0" * 32, "--store", "memory://", "--timeout", "nan"], "--timeout nan: expected"),
    (["jobs", "submit"], "Missing argument"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_arguments_are_exit_2_and_one_line(
    args: list[str],
    message: str,
    latin1: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("WEIRFLOW_API_KEYS", raising=False)
    monkeypatch.setattr(sys, "argv", ["weirflow", *[latin1 if a == "LATIN1" else a for a in args]])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err, err


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "weirflow", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.startswith("weirflow ") and out.stderr == ""


def test_a_bad_argument_in_a_real_process_is_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "weirflow", "serve", "--log-level", "loud"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Invalid value for '--log-level'" in out.stderr


@pytest.mark.parametrize(
    ("registry", "message"),
    [("notaurl", "must be a redis://"), ("redis://:pw@h:1/x", "'redis://:***@h:1/x': the database 'x'")],
)
def test_a_submit_with_a_bad_registry_url_creates_no_store(
    registry: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``jobs submit --pool P --registry URL`` with a URL that cannot work is refused before
    the store is opened: exit 2, one line, and no store file made."""
    db = tmp_path / "x.db"
    args = [
        "jobs",
        "submit",
        "wordcount",
        "--store",
        f"sqlite:///{db}",
        "--registry",
        registry,
        "--pool",
        "p",
    ]
    monkeypatch.setattr(sys, "argv", ["weirflow", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: --registry"), err
    assert message in err and "pw" not in err, err
    assert not db.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pipelines", "list", "--server", "notaurl"], "--server 'notaurl' is not an http:// or https"),
        (["pipelines", "show", "x", "--server", "ftp://u:pw@h"], "--server 'ftp://u:***@h' is not an http"),
        (["pipelines", "results", "x", "--server", "h:8000"], "--server 'h:8000' is not an http"),
        (["jobs", "list", "--store", "sqlite:///NOTADB"], "file is not a database"),
        (["jobs", "show", "x", "--store", "sqlite:///NOTADB"], "file is not a database"),
        (["schedules", "list", "--store", "sqlite:///NOTADB"], "file is not a database"),
        (["jobs", "submit", "wordcount", "--store", "sqlite:///NOTADB"], "file is not a database"),
        (["jobs", "list", "--store", "redis://:pw@127.0.0.1:1/0"], "redis://:***@127.0.0.1:1/0"),
    ],
    ids=lambda v: " ".join(v)[:50] if isinstance(v, list) else None,
)
def test_a_target_that_cannot_be_used_at_all_is_exit_2(
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``--server`` that is not a URL, a store that cannot be opened at all (a file that is
    not a database, a server that refuses the connection): bad usage, exit 2 and one line,
    as for ``weirflow worker`` (docs/reference.md: exit codes), not exit 1 (a job failed)."""
    notadb = tmp_path / "notes.db"
    notadb.write_text("not a database, but long enough to be read as one and refused\n" * 100)
    argv = [a.replace("NOTADB", str(notadb)) for a in args]
    monkeypatch.setattr(sys, "argv", ["weirflow", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err and "pw@" not in err, err


def test_a_command_run_alone_has_the_help_and_errors_it_has_in_the_whole_app(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main()`` builds only the command it runs (``build_app(name)``): the same command,
    so the same help and the same usage errors as in the whole app."""
    from typer.main import get_command

    from weirflow.cli.app import COMMANDS, GROUPS, app, build_app

    assert sorted(get_command(app).commands) == sorted([*COMMANDS, *GROUPS])  # type: ignore[attr-defined]
    for name in [*COMMANDS, *GROUPS]:
        assert list(get_command(build_app(name)).commands) == [name]  # type: ignore[attr-defined]
        for args in ([name, "--help"], [name, "--no-such-flag"]):
            shown = []
            for the_app in (app, build_app(name)):
                with pytest.raises(SystemExit) as done:
                    the_app(args, prog_name="weirflow")
                out = capsys.readouterr()
                shown.append((done.value.code, out.out, out.err))
            assert shown[0] == shown[1], (args, shown)
            assert f"weirflow {name}" in shown[0][1] + shown[0][2]
