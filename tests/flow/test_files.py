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
            "routines.a.with.inp: unknown setting (Sink takes label)",
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


def test_a_key_given_twice_is_an_error_for_every_duplicate(tmp_path: Path) -> None:
    text = f"name: x\nroutines:\n  a: {{use: '{SINK}'}}\n  a: {{use: '{SINK}'}}\noutputs: []\noutputs: []\n"
    with pytest.raises(wf.FlowError) as info:
        wf.Flow.load(write(tmp_path, text))
    assert [p.split(": ", 1)[1] for p in info.value.problems] == [
        "line 4, column 3: duplicate key 'a' (first at line 3)",
        "line 6, column 1: duplicate key 'outputs' (first at line 5)",
    ]


class NeedsLimit(wf.Routine):
    inp = wf.Slot()

    def __init__(self, limit: int, *, label: str = "") -> None:
        super().__init__()
        self.limit = limit
        self.label = label

    @inp.handler
    async def take(self, item: object, ctx: wf.Context) -> None: ...


def test_with_settings_are_checked_against_the_routine(tmp_path: Path) -> None:
    wordcount = "{use: 'examples.wordcount:Count', with: {min_len: 2, bogus: 1}}"
    needs = "{use: 'tests.flow.test_files:NeedsLimit', with: {lable: 'x'}}"
    text = f"name: x\nroutines:\n  count: {wordcount}\n  needs: {needs}\n"
    with pytest.raises(wf.FlowError) as info:
        wf.Flow.load(write(tmp_path, text))
    assert [p.split(": ", 1)[1] for p in info.value.problems] == [
        "routines.count.with.bogus: unknown setting (Count takes min_len)",
        "routines.needs.with.lable: unknown setting (NeedsLimit takes limit, label)",
        "routines.needs.with: missing required setting(s) limit (NeedsLimit takes limit, label)",
    ]
    good = "name: x\nroutines:\n  count: {use: 'examples.wordcount:Count', with: {min_len: 2}}\n"
    flow = wf.Flow.load(write(tmp_path, good))
    assert flow.routines["count"].min_len == 2  # type: ignore[attr-defined]


def test_the_documented_min_len_setting_takes_effect(tmp_path: Path) -> None:
    text = (
        "name: wc\nroutines:\n  split: {use: 'examples.wordcount:Split'}\n"
        "  count: {use: 'examples.wordcount:Count', with: {min_len: 2}}\n"
        "connections: ['split.words -> count.words']\noutputs: [count.total]\n"
    )
    result = wf.run(wf.Flow.load(write(tmp_path, text)), {"split.text": ["a bb ccc d"]}, timeout_s=10)
    assert result.outputs["count.total"] == [2]


def test_a_slot_of_a_routine_that_did_not_load_still_has_its_values_checked(tmp_path: Path) -> None:
    """Every problem of the file, not only the routine's: its slot settings are checked too."""
    text = (
        "name: x\nroutines:\n  count: {use: 'examples.wordcount:Count', with: {bogus: 1}}\n"
        "slots:\n  count.words: {capacity: 0, overflow: sideways, block_timeout_s: soon}\n"
    )
    with pytest.raises(wf.FlowError) as info:
        wf.Flow.load(write(tmp_path, text))
    assert [p.split(": ", 1)[1] for p in info.value.problems] == [
        "routines.count.with.bogus: unknown setting (Count takes min_len)",
        "slots.count.words: slot 'count.words': capacity must be an integer >= 1, not 0",
        "slots.count.words: unknown overflow policy 'sideways' "
        "(expected one of 'block', 'fail', 'drop_oldest', 'drop_newest')",
        "slots.count.words: slot 'count.words': block_timeout_s must be a number >= 0, not 'soon'",
    ]


def test_every_bad_slot_setting_is_reported(tmp_path: Path) -> None:
    text = (
        f"name: x\nroutines:\n  a: {{use: '{SINK}'}}\nslots:\n  a.inp: {{capacity: 0, overflow: sideways}}\n"
    )
    with pytest.raises(wf.FlowError) as info:
        wf.Flow.load(write(tmp_path, text))
    assert len(info.value.problems) == 2
    assert "capacity must be an integer >= 1" in info.value.problems[0]
    assert "sideways" in info.value.problems[1]


def test_a_file_that_is_not_utf8_is_a_flow_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(wf.FlowError, match=r"latin1.yaml: not a UTF-8 text file \(byte 9"):
        wf.Flow.load(path)


def test_a_connection_or_output_given_twice_is_an_error_even_between_routines_that_did_not_load(
    tmp_path: Path,
) -> None:
    text = (
        "name: x\nroutines:\n  a: {use: 'tests.flow.nope:A'}\n  b: {use: 'tests.flow.nope:B'}\n"
        f"  sink: {{use: '{SINK}'}}\n"
        "connections: ['a.out -> b.inp', 'a.out -> b.inp', 'a.out -> sink.inp', 'a.out -> sink.inp']\n"
        "outputs: [b.out, b.out, sink.done, sink.done]\n"
    )
    with pytest.raises(wf.FlowError) as info:
        wf.Flow.load(write(tmp_path, text))
    assert [p.split(": ", 1)[1] for p in info.value.problems[2:]] == [
        "connections[1]: 'a.out -> b.inp': given twice (first at connections[0])",
        "connections[3]: 'a.out -> sink.inp': given twice (first at connections[2])",
        "outputs[1]: 'b.out' is given twice (first at outputs[0])",
        "outputs[2]: routine 'sink' has no event 'done' (events: none)",
        "outputs[3]: 'sink.done' is given twice (first at outputs[2])",
    ]


def test_the_end_of_a_connection_whose_routine_loaded_is_checked_when_the_other_did_not_load(
    tmp_path: Path,
) -> None:
    text = (
        f"name: x\nroutines:\n  a: {{use: 'tests.flow.nope:A'}}\n  sink: {{use: '{SINK}'}}\n"
        "connections: ['a.out -> sink.nosuch', 'sink.nosuch -> a.inp', 'a.out -> sink.inp']\n"
    )
    with pytest.raises(wf.FlowError) as info:
        wf.Flow.load(write(tmp_path, text))
    problems = [p.split(": ", 1)[1] for p in info.value.problems]
    assert problems[0].startswith("routines.a.use: cannot import module 'tests.flow.nope'")
    assert problems[1:] == [
        "connections[0]: 'a.out -> sink.nosuch': routine 'sink' has no slot 'nosuch' (slots: inp)",
        "connections[1]: 'sink.nosuch -> a.inp': routine 'sink' has no event 'nosuch' (events: none)",
    ]
