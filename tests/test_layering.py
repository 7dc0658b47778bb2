"""The layers of ARCHITECTURE.md: a lower layer never imports a higher one, and the
commands that need no HTTP do not load it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "weirflow"
HTTP_MODULES = ("fastapi", "uvicorn", "starlette")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, at any depth of the
    file (inside functions and ``TYPE_CHECKING`` blocks too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("higher", ["weirflow.durable", "weirflow.server", "weirflow.cli", "weirflow.debug"])
def test_the_runtime_imports_nothing_from_a_higher_layer(higher: str) -> None:
    offending = {
        module_name(path): sorted(m for m in imported(path) if m == higher or m.startswith(f"{higher}."))
        for path in sorted((PACKAGE / "runtime").rglob("*.py"))
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_import_check_sees_relative_imports() -> None:
    """The check above is not vacuous: it resolves what the runtime does import."""
    engine = imported(PACKAGE / "runtime" / "engine.py")
    assert "weirflow.flow.graph" in engine and "weirflow.runtime.job" in engine
    assert "weirflow.durable.client" in imported(PACKAGE / "engine.py")


# run in a fresh interpreter: what ``weirflow worker`` and ``weirflow jobs`` load when they
# start and load flows (a module and a directory of flow files), and after a real command
COMMANDS = """
import json, sys
from weirflow.cli.app import app
from weirflow.cli.durable_common import load

flows = load("tests.durable.flows") + load("tests/server/flows")
try:
    app(["jobs", "list", "--store", "memory://", "--json"], standalone_mode=False)
except SystemExit as e:
    assert not e.code, e.code
http = sys.argv[1:]
print(json.dumps({"flows": len(flows), "loaded": sorted(m for m in sys.modules if m.split(".")[0] in http)}))
"""


def test_worker_and_jobs_commands_do_not_load_the_http_stack() -> None:
    done = subprocess.run(
        [sys.executable, "-c", COMMANDS, *HTTP_MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["flows"] > 1
    assert report["loaded"] == []
