"""The layers of ARCHITECTURE.md: a lower layer never imports a higher one, and the
commands that need no HTTP do not load it."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from weirflow.durable import JobSpec, open_store

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


# what a real ``weirflow worker`` process has imported when it exits after its first job
# (its ``sys.modules`` at exit: lazy imports at run time count too): none of these, which
# only the options that use them load (``--alert-webhook``: httpx;
# ``--processes`` or a ``WEIRFLOW_*`` supervise setting: pydantic-settings and psutil;
# ``--metrics-port``: prometheus-client and the HTTP stack; ``--registry``: the rich tables of
# ``weirflow nodes``; rich, which structlog would import for a traceback renderer the
# command line does not use). Each costs every worker start.
WORKER_UNUSED = ("httpx", "pydantic_settings", "prometheus_client", "psutil", "rich", *HTTP_MODULES)


# ``weirflow worker`` as the console script runs it, writing its modules' top-level names at exit
WORKER_MAIN = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted({m.split(".")[0] for m in sys.modules}))))
from weirflow.cli.app import main
main()
"""


async def _first_job_imports(url: str, out: Path) -> set[str]:
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow="noop", inputs={"n.input": [1]}, max_attempts=1))
        command = ["worker", "--store", url, "--flows", "tests.durable.flows"]
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER_MAIN, str(out), *command],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            record = await store.wait_finished(job_id, 60)
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=60)
        assert record is not None and record.status == "completed", stderr[-2000:]
        assert proc.returncode == 0, stderr[-2000:]
    finally:
        await store.close()
    return set(json.loads(out.read_text()))


# the command line's own log lines: a traceback printed plainly (without local variables,
# which may hold a store URL's password), whatever renderers are installed
PLAIN_TRACEBACK = """
import sys, structlog
from weirflow.cli import app
sys.argv = ["weirflow", "--version"]
try:
    app.main()
except SystemExit:
    pass
def fails(store_url):
    raise ValueError("bad")
try:
    fails("postgresql://wf:hunter2@db/wf")
except ValueError:
    structlog.get_logger().exception("it failed")
"""


def test_the_command_line_logs_tracebacks_plainly() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_TRACEBACK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback (most recent call last):" in done.stderr and "ValueError: bad" in done.stderr
    assert "hunter2" not in done.stderr, done.stderr  # (rich and better-exceptions show the locals)


def test_a_worker_process_imports_only_what_its_options_use(tmp_path: Path) -> None:
    loaded = asyncio.run(_first_job_imports(f"sqlite:///{tmp_path / 'w.db'}", tmp_path / "modules.json"))
    assert {"weirflow", "structlog", "sqlite3"} <= loaded  # (the check sees what it looks for)
    assert sorted(set(WORKER_UNUSED) & loaded) == []


# -- no module outside the runtime uses a runtime object's private attributes --------------
#
# The rule, checked on the source of every module of ``weirflow`` outside
# ``weirflow/runtime/``: an attribute access ``x._name`` (one leading underscore, not a
# dunder) is an error when ``_name`` is private to a runtime class, i.e. some class in
# ``weirflow/runtime/`` defines it: a method or class attribute of that name, a
# ``self._name = ...`` in one of its methods, or an entry of its ``__slots__``.
# The exception is ``self._name`` (or ``cls._name``) inside a class that is not derived
# from a runtime class (one of its bases is imported from ``weirflow.runtime``), or that
# defines ``_name`` itself: that is the class's own attribute, which merely shares a
# name. So a subclass of a runtime class outside the runtime may not use the base's
# private names either. Modules talk to runtime objects through public methods and
# properties instead.


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined_by(cls: ast.ClassDef) -> set[str]:
    """The private names ``cls`` defines (methods, class attributes, ``self.x =``, slots)."""
    names: set[str] = set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        for target in targets:
            if isinstance(target, ast.Name):
                names.add(target.id)
                if target.id == "__slots__" and node.value is not None:
                    names.update(
                        c.value
                        for c in ast.walk(node.value)
                        if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    )
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {n for n in names if _private(n)}


def runtime_private_names() -> dict[str, set[str]]:
    """Each private name a runtime class defines -> the classes defining it."""
    owners: dict[str, set[str]] = {}
    for path in (PACKAGE / "runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                for name in defined_by(node):
                    owners.setdefault(name, set()).add(node.name)
    return owners


def private_runtime_uses(path: Path, owners: dict[str, set[str]], root: Path = PACKAGE.parent) -> list[str]:
    """Each ``x._name`` in ``path`` against the rule above, as ``file:line: x._name (...)``."""
    found: list[str] = []
    tree = ast.parse(path.read_text(), str(path))
    runtime_classes = {c for classes in owners.values() for c in classes}
    from_runtime = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and "runtime" in (node.module or "").split(".")
        for alias in node.names
        if alias.name in runtime_classes
    }

    def own_names(cls: ast.ClassDef) -> set[str] | None:
        """What ``self._x`` may use in ``cls``: ``None`` for anything (not a runtime subclass)."""
        bases = {ast.unparse(b).rpartition(".")[2] for b in cls.bases}
        return defined_by(cls) if bases & from_runtime else None

    def visit(node: ast.AST, own: set[str] | None) -> None:
        if isinstance(node, ast.ClassDef):
            own = own_names(node)
        if isinstance(node, ast.Attribute) and node.attr in owners:
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            mine = on_self and (own is None or node.attr in own)
            if not mine:
                where = f"{path.relative_to(root)}:{node.lineno}"
                found.append(
                    f"{where}: {ast.unparse(node)} (private to {', '.join(sorted(owners[node.attr]))})"
                )
        for child in ast.iter_child_nodes(node):
            visit(child, own)

    visit(tree, set())
    return found


def test_no_module_outside_the_runtime_uses_private_attributes_of_runtime_objects() -> None:
    owners = runtime_private_names()
    outside = [p for p in sorted(PACKAGE.rglob("*.py")) if PACKAGE / "runtime" not in p.parents]
    assert [use for path in outside for use in private_runtime_uses(path, owners)] == []


def test_the_private_attribute_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The check above is not vacuous: it knows the runtime's private names and flags a
    use from outside, but not a class's own attribute of the same name."""
    owners = runtime_private_names()
    assert {"Job"} <= owners["_close_out"] and "Context" in owners["_loop_thread"]
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from weirflow.runtime.job import Job as Base\n"
        "class Mine:\n"
        "    def uses(self, job, ctx):\n"
        "        return self._close_out, job._close_out(), ctx._loop_thread\n"
        "class Sub(Base):\n"
        "    def __init__(self):\n"
        "        self._loop_thread = 1\n"
        "    def uses(self):\n"
        "        return self._loop_thread, self._close_out()\n"
    )
    assert private_runtime_uses(sample, owners, root=tmp_path) == [
        "sample.py:4: job._close_out (private to Job)",
        "sample.py:4: ctx._loop_thread (private to Context)",
        "sample.py:9: self._close_out (private to Job)",
    ]
