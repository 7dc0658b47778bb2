"""``weirflow validate``: a one-line summary and exit 0, or the problems and exit 2."""

from __future__ import annotations

from .conftest import FLOWS, Cli


def test_valid_flow_prints_one_line_summary(cli: Cli) -> None:
    p = cli("validate", "examples/wordcount.yaml")
    assert p.returncode == 0, p.stderr
    assert p.stdout == (
        "examples/wordcount.yaml: flow 'wordcount' is valid: 2 routine(s), 1 connection(s), 1 output(s)\n"
    )
    assert p.stderr == ""


def test_every_problem_is_listed_without_traceback(cli: Cli) -> None:
    p = cli("validate", f"{FLOWS}/many_problems.yaml")
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr == (
        "error: 2 problems:\n"
        f"  - {FLOWS}/many_problems.yaml: routines.split.colour: "
        "unknown key (expected 'use', 'with' or 'executor')\n"
        f"  - {FLOWS}/many_problems.yaml: connections[0]: 'split.words -> count.nowhere': "
        "routine 'count' has no slot 'nowhere' (slots: words)\n"
    )


def test_unknown_routine_path(cli: Cli) -> None:
    p = cli("validate", f"{FLOWS}/unknown_routine.yaml")
    assert p.returncode == 2
    assert p.stderr == (
        f"error: {FLOWS}/unknown_routine.yaml: routines.x.use: cannot import module 'examples.nope': "
        "No module named 'examples.nope'\n"
    )


def test_bad_yaml_syntax(cli: Cli) -> None:
    p = cli("validate", f"{FLOWS}/bad_syntax.yaml")
    assert p.returncode == 2
    assert p.stderr.startswith(f"error: {FLOWS}/bad_syntax.yaml: line 4, column 1: invalid YAML: ")
    assert p.stderr.count("\n") == 1


def test_missing_file(cli: Cli) -> None:
    p = cli("validate", "nope.yaml")
    assert p.returncode == 2
    assert p.stderr == "error: nope.yaml: cannot read flow file: No such file or directory\n"
