"""``--input`` parsing: JSON items, ``@file`` lines, slot checks, order."""

from __future__ import annotations

from pathlib import Path

import pytest
from examples.wordcount import build_flow

from weirflow.cli.inputs import InputError, parse_inputs


def test_json_values_and_file_lines_append_in_order(tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("one two\n\n   \nthree\r\nfour", encoding="utf-8")
    got = parse_inputs(
        ['split.text="zero"', f"split.text=@{lines}", 'split.text={"a": [1]}', "count.words=7"],
        build_flow(),
    )
    assert got == {"split.text": ["zero", "one two", "three", "four", {"a": [1]}], "count.words": [7]}


def test_value_may_contain_equals_signs() -> None:
    assert parse_inputs(['split.text="a=b"'], build_flow()) == {"split.text": ["a=b"]}


def test_a_quoted_at_sign_is_a_string_not_a_file() -> None:
    assert parse_inputs(['split.text="@home"'], build_flow()) == {"split.text": ["@home"]}


def test_empty_file_gives_no_items(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    assert parse_inputs([f"split.text=@{empty}"], build_flow()) == {"split.text": []}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("split.text", "expected routine.slot=VALUE"),
        ("nope.text=1", "flow 'wordcount' has no slot 'nope.text' (slots: split.text, count.words)"),
        ("split.text=", "value '' is not valid JSON"),
        ("split.text={bad", "is not valid JSON"),
        ("split.text=@/no/such/file", "cannot read /no/such/file: No such file or directory"),
    ],
)
def test_bad_options_name_the_option(option: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_inputs([option], build_flow())
    assert str(info.value).startswith(f"--input {option!r}: ")
    assert message in str(info.value)


def test_file_that_is_not_text(tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8 text"):
        parse_inputs([f"split.text=@{blob}"], build_flow())


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory; @ takes a file"):
        parse_inputs([f"split.text=@{tmp_path}"], build_flow())


def test_an_at_without_a_file_name_says_what_it_needs() -> None:
    with pytest.raises(InputError, match=r"@ needs a file name: --input split\.text=@lines\.txt"):
        parse_inputs(["split.text=@"], build_flow())
