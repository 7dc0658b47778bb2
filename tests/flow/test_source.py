"""``--flows``: a directory of flow files, one flow file, or a module's top-level flows."""

from __future__ import annotations

from pathlib import Path

import pytest

import weirflow as wf
from tests.server.conftest import FLOW_DIR, SERVED
from weirflow.flow import load_flows


def test_a_module_gives_its_top_level_flows() -> None:
    assert [f.name for f in load_flows(SERVED)] == ["stream", "picky"]


def test_a_directory_gives_its_flow_files() -> None:
    assert [f.name for f in load_flows(FLOW_DIR)] == ["echo"]
    assert [f.name for f in load_flows(f"{FLOW_DIR}/echo.yaml")] == ["echo"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("tests.server.nothing_here", "cannot import flows module 'tests.server.nothing_here'"),
        ("tests.server.conftest", "no flows found in module tests.server.conftest"),
        ("not a/module", "is neither a directory, a flow file nor a module name"),
    ],
)
def test_bad_sources_say_why(source: str, message: str) -> None:
    with pytest.raises(wf.FlowError, match=message):
        load_flows(source)


def test_an_empty_directory_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(wf.FlowError, match="no flows found in directory"):
        load_flows(str(tmp_path))
    echo = Path(FLOW_DIR, "echo.yaml").read_text()
    (tmp_path / "a.yaml").write_text(echo)
    (tmp_path / "b.yml").write_text(echo)
    with pytest.raises(wf.FlowError, match="two flows are named 'echo'"):
        load_flows(str(tmp_path))


def test_the_loader_is_still_importable_from_the_server() -> None:
    from weirflow.server import load_flows as from_server
    from weirflow.server.flow_source import load_flows as from_old_module

    assert from_server is load_flows and from_old_module is load_flows
