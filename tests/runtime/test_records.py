"""The journal's record schema and its codec: the text form decodes to the object form."""

from __future__ import annotations

import json
from typing import Any

import pytest

import weirflow as wf
from weirflow.runtime import Step, records
from weirflow.runtime.records import Codec, Record


def step(*, status: str = "completed", final: bool = True, on_end: bool = False) -> Step:
    s = Step("r", 7, 2, [] if on_end else [("a", 1), ("b", [2])], on_end=on_end)
    s.emitted = [("out", {"x": [1, 2.5]}), ("log", "é\n")]
    s.state = {"n": 3, "seen": [1, None]}
    s.status, s.final = status, final
    s.error = None if status == "completed" else "ValueError: no"
    return s


def decoded(line: bytes) -> list[Record]:
    out: list[Record] = []
    records.decode(line, out)
    return out


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize(
    "kw",
    [{}, {"status": "failed", "final": False}, {"status": "failed"}, {"on_end": True}],
    ids=["completed", "failed-retried", "failed-final", "on_end"],
)
def test_a_step_in_text_decodes_to_its_records(kw: dict[str, Any]) -> None:
    codec, s = Codec(), step(**kw)
    assert decoded(codec.start(codec.head(s))) == [records.start(s)]
    assert decoded(codec.finished(s, None)) == [as_json(records.done(s))]  # (pairs: lists)
    # a whole step: its start, the enqueues of its emits (by position) and its done
    whole = codec.finished(s, [(codec.name("t.inp"), 0), (codec.name("u.inp"), 1)])
    enqs = [records.enq("t.inp", s.emitted[0][1], s), records.enq("u.inp", s.emitted[1][1], s)]
    assert enqs[0]["by"] == ["r", 7, 0] and enqs[1]["by"] == ["r", 7, 1]
    assert decoded(whole) == [records.start(s), *enqs, as_json(records.done(s))]


def test_enqueues_dead_letters_resume_and_end_decode_to_their_records() -> None:
    codec, s = Codec(), step()
    for by in ("input", None, s):
        item = s.emitted[1][1] if by is s else 5
        line = codec.enq(codec.name("t.inp"), codec.item(item), codec.origin(by, item))
        assert decoded(line) == [records.enq("t.inp", item, by)]
    letter = wf.DeadLetter("t.inp", [1], "dropped_oldest", None, 12.5)
    assert decoded(Codec.dead_letter(letter, codec.item([1]), queued=True)) == [
        records.dead_letter(letter, queued=True)
    ]
    assert decoded(records.RESUME_LINE) == [records.RESUME]
    assert decoded(Codec.end(wf.JobStatus.FAILED, "boom")) == [records.end(wf.JobStatus.FAILED, "boom")]


@pytest.mark.parametrize("line", ['[9,"x"]', '{"t":"later"}', "[]", '"text"'])
def test_a_line_of_no_known_kind_is_refused(line: str) -> None:
    with pytest.raises(records.UnknownRecordError):
        decoded(line.encode())


def test_items_a_store_cannot_give_back_are_a_store_error() -> None:
    with pytest.raises(wf.StoreError, match="a tuple would come back as a list"):
        Codec.item({"x": (1, 2)})


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (2**64, "out of range"),
        (-(2**63) - 1, "out of range"),
        ("a\x00b", "NUL"),
        ("\udc80", "unpaired surrogate"),
        (float("nan"), "NaN"),
    ],
)
def test_the_fast_path_for_numbers_and_text_refuses_what_storable_refuses(value: Any, why: str) -> None:
    with pytest.raises(wf.StoreError, match=why):
        records.dumps(value, "item")


@pytest.mark.parametrize("value", [0, 2**64 - 1, -(2**63), "", "é\\u0000 is text", True, None, 1.5])
def test_the_fast_path_writes_what_comes_back_exactly(value: Any) -> None:
    assert json.loads(records.dumps(value, "item")) == value
