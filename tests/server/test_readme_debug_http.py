"""The README's debugging-over-HTTP example works as written (on a free port instead of 8000)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.server.conftest import live_server

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    section = README.read_text().split("## Debugging a flow\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return block


def test_the_debugging_curl_example_runs() -> None:
    example = _example()
    with live_server(flows="examples") as live:
        port = live.url.rsplit(":", 1)[1]
        script = "set -euo pipefail\n" + example.replace("localhost:8000", f"127.0.0.1:{port}")
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    answers: list[Any] = [json.loads(line) for line in lines if line.startswith("{")]
    bp, accepted, view, value, location, stepped, resumed, result = answers

    assert (bp["id"], bp["kind"], bp["condition"], bp["status"]) == (
        "bp1",
        "connection",
        'item == "not"',
        "ok",
    )
    assert accepted == {"accepted": 2}
    assert view["pause_reason"] == "breakpoint:bp1" and view["held"] == 1
    assert view["location"]["item"] == "not" and view["location"]["routine"] == "split"
    assert value == {"value": 3}
    assert location["item"] == "NOT"
    where = stepped["location"]
    assert (where["kind"], where["target"], where["item"], where["breakpoint"]) == (
        "event",
        "split.words",
        "to",
        None,
    )
    assert resumed["status"] == "running" and resumed["warnings"] == []
    expected = re.search(r"^# (\{.*\})$", example, flags=re.M)
    assert expected is not None
    assert json.dumps(result, separators=(",", ":")) == expected.group(1)

    sse = [line for line in lines if line.startswith(("event:", "data:"))]
    assert sse[0::2] == ["event: breakpoint", "event: breakpoint"]  # the hit and the step
    hits = [json.loads(line.removeprefix("data: ")) for line in sse[1::2]]
    assert [(h["breakpoint"], h["item"]) for h in hits] == [("bp1", "not"), (None, "to")]
