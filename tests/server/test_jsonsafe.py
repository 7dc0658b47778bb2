"""``jsonable``: JSON passes through, anything else becomes a marked ``repr``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from weirflow.server.jsonsafe import MAX_REPR_CHARS, jsonable


@dataclass
class Point:
    x: int


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize("value", [None, True, 1, -2.5, "s", [1, "a"], {"a": {"b": [None]}}])
def test_json_values_pass_through(value: Any) -> None:
    assert jsonable(value) == value


def test_the_rest_is_rendered_with_a_marker() -> None:
    assert jsonable((1, 2)) == [1, 2]
    assert jsonable({1: "a", None: "b", False: "c", 2.5: "d"}) == {
        "1": "a",
        "null": "b",
        "false": "c",
        "2.5": "d",
    }
    assert jsonable(Point(3)) == {"$repr": "Point(x=3)", "$type": f"{__name__}.Point"}
    assert jsonable(float("inf")) == {"$repr": "inf", "$type": "float"}
    assert jsonable({"p": [Point(1)]}) == {"p": [{"$repr": "Point(x=1)", "$type": f"{__name__}.Point"}]}
    assert jsonable(BadRepr())["$repr"] == "<repr failed: RuntimeError>"
    assert len(jsonable(b"x" * 10_000)["$repr"]) == MAX_REPR_CHARS + 1


def test_cycles_and_deep_nesting_end() -> None:
    loop: list[Any] = []
    loop.append(loop)
    rendered = jsonable(loop)
    json.dumps(rendered)  # finite and serialisable
    depth = 0
    while isinstance(rendered, list):
        rendered, depth = rendered[0], depth + 1
    assert depth == 64 and rendered["$type"] == "list"
