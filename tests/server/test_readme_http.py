"""The README's HTTP API example works as written (on a free port instead of 8000)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.server.conftest import live_server

README = Path(__file__).resolve().parents[2] / "README.md"


def _http_blocks() -> list[str]:
    section = README.read_text().split("## HTTP API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_the_curl_example_runs() -> None:
    serve, example = _http_blocks()
    assert serve.startswith("weirflow serve --flows examples ")
    with live_server(flows="examples") as live:
        port = live.url.rsplit(":", 1)[1]
        script = "set -euo pipefail\n" + example.replace("localhost:8000", f"127.0.0.1:{port}")
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    expected = re.search(r"^# (\{.*\})$", example, flags=re.M)
    assert expected is not None
    lines = done.stdout.splitlines()
    assert lines[0] == expected.group(1)
    assert "event: end" in lines
