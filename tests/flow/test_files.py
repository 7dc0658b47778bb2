"""Flow files: errors name the file, the key path and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

import weirflow as wf

SINK = "tests.flow.examples_for_tests:Sink"
GOOD = """\
name: demo
routines:
  src: {use: "tests.flow.examples_for_tests:Source"}
  up: {use: "tests.flow.examples_for_tests:upper"}
  rev: {use: "tests.flow.examples_for_tests:plain"}
slots:
  up.input: {capacity: 3, overflow: block, block_timeout_s: 2.5}
connections:
  - src.out -> up.input
  - {from: up.output, to: rev.input}
outputs: [rev.output]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(text)
    return path


def test_good_file_loads_and_runs(tmp_path: Path) -> None:
    flow = wf.Flow.load(write(tmp_path, GOOD))
    spec = flow.slot_spec("up.input")
    assert (spec.capacity, spec.block_timeout_s) == (3, 2.5)
    result = wf.run(flow, {"src.inp": ["abc", "de"]}, timeout_s=10)
    assert result.outputs["rev.output"] == ["CBA", "ED"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nroutines: [\n", "line 3, column 1: invalid YAML"),
        ("- just a list\n", "must be a mapping"),
        (
            "name: x\nroutines:\n  a: {use: 'tests.flow.nope:X'}\n",
            "routines.a.use: cannot import module 'tests.flow.nope'",
        ),
        (
            "name: x\nroutines:\n  a: {use: 'tests.flow.examples_for_tests:Missing'}\n",
            "routines.a.use: module 'tests.flow.examples_for_tests' has no attribute 'Missing'",
        ),
        ("name: x\nroutines:\n  a: {use: 'no_colon'}\n", "routines.a.use: 'no_colon' must look like"),
        (
            "name: x\nroutines:\n  a: {use: 'tests.flow.examples_for_tests:NOT_A_ROUTINE'}\n",
            "routines.a.use: tests.flow.examples_for_tests:NOT_A_ROUTINE is not a wf.Routine",
        ),
        (
            "name: x\nroutines:\n  a: {use: 'tests.flow.examples_for_tests:Sink', with: {inp: 1}}\n",
            "routines.a.with: Sink: cannot configure 'inp'",
        ),
        ("name: x\nroutines:\n  a: {uses: 'x:y'}\n", "routines.a.uses: unknown key"),
        (
            f"name: x\nroutines:\n  a: {{use: '{SINK}'}}\nslots:\n  a.inp: {{capacity: 0}}\n",
            "slots.a.inp: slot 'a.inp': capacity must be an integer >= 1, not 0",
        ),
        (
            f"name: x\nroutines:\n  a: {{use: '{SINK}'}}\nslots:\n  a.inp: {{size: 3}}\n",
            "slots.a.inp.size: unknown key",
        ),
        (
            f"name: x\nroutines:\n  a: {{use: '{SINK}'}}\nconnections: ['a.out => a.inp']\n",
            "connections[0]: 'a.out => a.inp': must be 'routine.event -> routine.slot'",
        ),
        (
            "name: x\nroutines:\n  a: {use: 'tests.flow.examples_for_tests:Sink'}\noutputs: [a.nothing]\n",
            "outputs[0]: routine 'a' has no event 'nothing'",
        ),
        (
            "name: x\nroutines:\n  a: {use: 'tests.flow.examples_for_tests:Sink'}\nextra: 1\n",
            "extra: unknown key",
        ),
    ],
)
def test_bad_files_name_file_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(wf.FlowError) as info:
        wf.Flow.load(path)
    problems = info.value.problems
    assert all(p.startswith(f"{path}: ") for p in problems), problems
    assert any(expected in p for p in problems), problems
    assert all(p in str(info.value) for p in problems)


def test_all_problems_of_a_file_are_reported_together(tmp_path: Path) -> None:
    text = "routines:\n  a: {use: 'tests.flow.nope:X'}\n  b: {}\nconnections: 5\n"
    with pytest.raises(wf.FlowError) as info:
        wf.Flow.load(write(tmp_path, text))
    keys = [p.split(": ")[1] for p in info.value.problems]
    assert keys == ["name", "routines.a.use", "routines.b.use", "connections"]
    assert str(info.value).startswith("4 problems:")


def test_missing_file_is_a_flow_error(tmp_path: Path) -> None:
    with pytest.raises(wf.FlowError, match="cannot read flow file"):
        wf.Flow.load(tmp_path / "absent.yaml")


def test_a_routine_that_fails_to_load_is_reported_once(tmp_path: Path) -> None:
    text = (
        "name: x\nroutines:\n  a: {use: 'tests.flow.nope:X'}\n"
        f"  b: {{use: '{SINK}'}}\nslots:\n  a.inp: {{capacity: 2}}\n"
        "connections: ['a.out -> b.inp']\noutputs: [a.out]\n"
    )
    with pytest.raises(wf.FlowError) as info:
        wf.Flow.load(write(tmp_path, text))
    assert len(info.value.problems) == 1
    assert "routines.a.use: cannot import module 'tests.flow.nope'" in info.value.problems[0]
