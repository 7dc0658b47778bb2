"""The README's Python examples work as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert BLOCKS


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str) -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    if "wf.Client(" not in code:
        exec(compile(code, str(README), "exec"), namespace)  # our own README, not user input
        return
    from tests.server.conftest import live_server

    with live_server("examples") as live:  # the client examples talk to `weirflow serve --flows examples`
        code = code.replace("http://127.0.0.1:8000", live.url)
        exec(compile("import weirflow as wf\n" + code, str(README), "exec"), namespace)
