"""The JSON document ``run`` and ``demo`` print, built from a real job's result."""

from __future__ import annotations

import json

import weirflow as wf
from weirflow.cli.report import exit_code, report, to_json


@wf.routine
def as_set(item: int) -> object:
    return {item}  # not a JSON value


def test_report_of_completed_job() -> None:
    flow = wf.Flow("sets").add("s", as_set).output("s.output")
    result = wf.run(flow, {"s.input": [1, 2]}, timeout_s=10)
    doc = report(result)
    assert doc == {
        "status": "completed",
        "outputs": {"s.output": [{1}, {2}]},
        "dead_letters": 0,
        "error": None,
    }
    assert exit_code(doc) == 0
    # non-JSON items are written as their repr, on one line
    text = to_json(doc)
    assert "\n" not in text
    assert json.loads(text)["outputs"] == {"s.output": ["{1}", "{2}"]}


def test_error_override_and_exit_code_of_unfinished_job() -> None:
    flow = wf.Flow("sets").add("s", as_set).output("s.output")
    result = wf.run(flow, {"s.input": [1]}, timeout_s=10)
    doc = report(result, error="timed out")
    assert doc["error"] == "timed out"
    assert exit_code({**doc, "status": "cancelled"}) == 1
    assert exit_code({**doc, "status": "failed"}) == 1
