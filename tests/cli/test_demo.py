"""``weirflow demo`` and the bundled flow in ``weirflow._demo``."""

from __future__ import annotations

import json
import re
from collections import Counter

import weirflow as wf
from weirflow import _demo

from .conftest import Cli


def expected_counts() -> Counter[str]:
    words = re.findall(r"[a-z']+", _demo.TEXT.lower())
    return Counter(w for w in words if w not in _demo.STOP_WORDS)


def test_demo_prints_top_words_as_json(cli: Cli) -> None:
    p = cli("demo")  # (its speed is not asserted here: timed tests fail on a loaded machine)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    doc = json.loads(p.stdout)
    counts = expected_counts()
    assert doc["status"] == "completed"
    assert doc["error"] is None
    assert doc["dead_letters"] == 0
    assert doc["outputs"]["tally.total"] == [sum(counts.values())]
    top = doc["outputs"]["tally.top"]
    assert len(top) == 5
    assert [n for _, n in top] == [n for _, n in counts.most_common(5)]
    assert all(counts[word] == n for word, n in top)


def test_demo_flow_runs_in_process_and_pushes_back() -> None:
    result = wf.run(_demo.build_flow(), _demo.inputs(), timeout_s=30)
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs["tally.top"][0] == ["water", 7]
    assert result.outputs["tally.total"] == [sum(expected_counts().values())]
    assert all(s.balanced() for s in result.stats.slots.values())
    # the slow batch stage fills its slot and pushes back on the filter: the progress
    # display has something to show
    for path in ("tally.words", "filter.words"):
        slot = result.stats.slots[path]
        assert slot.high_water == slot.capacity
        assert slot.blocked_s > 0
