"""``weirflow run``: outputs as JSON on stdout, exit codes 0/1/2, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from .conftest import FLOWS, ROOT, Cli

WORDCOUNT = "examples/wordcount.yaml"


def test_runs_flow_file_and_prints_outputs(cli: Cli) -> None:
    p = cli("run", WORDCOUNT, "--input", 'split.text="a b"', "--input", 'split.text="c d e"')
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {
        "status": "completed",
        "outputs": {"count.total": [5]},
        "dead_letters": 0,
        "error": None,
    }
    assert p.stderr == ""  # no progress display: stderr is not a terminal


def test_output_is_one_line_of_json(cli: Cli) -> None:
    p = cli("run", WORDCOUNT, "-i", 'split.text="x"')
    assert p.stdout.count("\n") == 1
    assert json.loads(p.stdout)["outputs"] == {"count.total": [1]}


def test_file_input_gives_one_item_per_non_empty_line(cli: Cli) -> None:
    p = cli("run", f"{FLOWS}/echo.yaml", "--input", "echo.items=@tests/cli/flows/lines.txt")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["outputs"] == {"echo.out": ["first line", "  second, indented", "third"]}


def test_json_values_are_one_item_each_and_repeats_append_in_order(cli: Cli) -> None:
    p = cli(
        "run",
        f"{FLOWS}/echo.yaml",
        "-i",
        'echo.items={"json": 1}',
        "-i",
        "echo.items=[1, 2]",
        "-i",
        "echo.items=3.5",
        "-i",
        "echo.items=null",
        "-i",
        'echo.items="text"',
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["outputs"] == {"echo.out": [{"json": 1}, [1, 2], 3.5, None, "text"]}


def test_no_inputs_completes_with_empty_outputs(cli: Cli) -> None:
    p = cli("run", f"{FLOWS}/echo.yaml")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["outputs"] == {"echo.out": []}


def test_failing_handler_exits_1_with_the_error_in_the_json(cli: Cli) -> None:
    p = cli("run", f"{FLOWS}/failing.yaml", "-i", 'boom.items="boom"')
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["status"] == "failed"
    assert doc["error"] == "routine 'boom' failed: RuntimeError: kaboom"
    assert doc["dead_letters"] == 1
    assert doc["outputs"] == {"boom.out": []}
    assert p.stderr == ""


def test_timeout_cancels_the_job_and_exits_1(cli: Cli) -> None:
    p = cli("run", f"{FLOWS}/slow.yaml", "-i", "slow.items=1", "--timeout", "0.3")
    assert p.returncode == 1
    assert json.loads(p.stdout) == {
        "status": "cancelled",
        "outputs": {"slow.out": []},
        "dead_letters": 1,
        "error": "timed out after 0.3s; job cancelled",
    }


def test_input_without_equals_sign(cli: Cli) -> None:
    p = cli("run", WORDCOUNT, "--input", "split.text")
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr == (
        "error: --input 'split.text': expected routine.slot=VALUE (VALUE is JSON, or @file for its lines)\n"
    )


def test_input_for_unknown_slot(cli: Cli) -> None:
    p = cli("run", WORDCOUNT, "--input", "split.nope=1")
    assert p.returncode == 2
    assert p.stderr == (
        "error: --input 'split.nope=1': flow 'wordcount' has no slot 'split.nope' "
        "(slots: split.text, count.words)\n"
    )


def test_input_with_bad_json_suggests_quotes(cli: Cli) -> None:
    p = cli("run", WORDCOUNT, "--input", "split.text=hello world")
    assert p.returncode == 2
    assert p.stderr == (
        "error: --input 'split.text=hello world': value 'hello world' is not valid JSON "
        "(Expecting value); to pass a string, quote it: --input 'split.text=\"hello world\"'\n"
    )


def test_input_a_durable_job_could_not_hold_is_refused(cli: Cli) -> None:
    """The same check as ``jobs submit`` and the HTTP API, so a value works everywhere or nowhere."""
    p = cli("run", WORDCOUNT, "--input", 'split.text="a"', "--input", "split.text=[1, Infinity]")
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr == (
        "error: --input 'split.text=[1, Infinity]': "
        'inputs["split.text"][1][1]: inf is not a JSON number (NaN and infinities are not)\n'
    )


def test_input_from_missing_file(cli: Cli) -> None:
    p = cli("run", WORDCOUNT, "--input", "split.text=@no/such/file.txt")
    assert p.returncode == 2
    assert p.stderr == (
        "error: --input 'split.text=@no/such/file.txt': "
        "cannot read no/such/file.txt: No such file or directory\n"
    )


def test_bad_yaml_syntax_names_line_and_column(cli: Cli) -> None:
    p = cli("run", f"{FLOWS}/bad_syntax.yaml")
    assert p.returncode == 2
    assert p.stderr == (
        f"error: {FLOWS}/bad_syntax.yaml: line 4, column 1: invalid YAML: expected ',' or '}}', "
        "but got '<scalar>'\n"
    )


def test_unknown_key_in_flow_file(cli: Cli) -> None:
    p = cli("run", f"{FLOWS}/unknown_key.yaml")
    assert p.returncode == 2
    assert p.stderr == (
        f"error: {FLOWS}/unknown_key.yaml: outputz: unknown key "
        "(expected one of connections, name, outputs, routines, slots)\n"
    )


def test_unknown_routine_path(cli: Cli) -> None:
    p = cli("run", f"{FLOWS}/unknown_routine.yaml")
    assert p.returncode == 2
    assert p.stderr == (
        f"error: {FLOWS}/unknown_routine.yaml: routines.x.use: cannot import module 'examples.nope': "
        "No module named 'examples.nope'\n"
    )


def test_missing_flow_file(cli: Cli) -> None:
    p = cli("run", "no-such-flow.yaml")
    assert p.returncode == 2
    assert p.stderr == "error: no-such-flow.yaml: cannot read flow file: No such file or directory\n"


def test_unknown_option_is_a_usage_error(cli: Cli) -> None:
    p = cli("run", WORDCOUNT, "--bogus")
    assert p.returncode == 2
    assert "No such option: --bogus" in p.stderr
    assert "Traceback" not in p.stderr


def test_flow_file_is_found_from_another_directory(cli: Cli) -> None:
    p = cli("run", "failing.yaml", "-i", 'boom.items="fine"', cwd=ROOT / FLOWS)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["outputs"] == {"boom.out": ["fine"]}


def test_ctrl_c_cancels_the_job_prints_a_summary_and_exits_130() -> None:
    env = {**os.environ, "CLI_TEST_ANNOUNCE": "1"}
    args = ["run", f"{FLOWS}/slow.yaml", "-i", "slow.items=1", "-i", "slow.items=2", "-i", "slow.items=3"]
    with subprocess.Popen(
        [sys.executable, "-m", "weirflow", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        assert proc.stderr.readline() == "handling 1\n"  # the job is running
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.splitlines() == [
        "interrupted: job cancelled: 3 input(s) accepted, 0 processed, 3 dead-lettered as job_cancelled"
    ]
    assert json.loads(out) == {
        "status": "cancelled",
        "outputs": {"slow.out": []},
        "dead_letters": 3,
        "error": "interrupted",
    }
