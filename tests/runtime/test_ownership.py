"""One owner per invariant: the slot counters change only in ``SlotQueue``, dead letters
are made only by ``DeadLetterLog``, runtime modules use each other's public methods
only, and each connection's delivery function is chosen when hooks and journal are
wired."""

from __future__ import annotations

import ast
from pathlib import Path

import weirflow as wf
from tests.runtime.flows import Collect, Forward
from weirflow.runtime import LogJournal

PACKAGE = Path(wf.__file__).resolve().parent
RUNTIME = PACKAGE / "runtime"
COUNTERS = {"enqueued", "processed", "in_flight", "dead_lettered", "high_water"}


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return [node.target]
    return []


def test_slot_counters_change_only_in_slot_queue() -> None:
    found = []
    for path in _modules(PACKAGE):
        if path == RUNTIME / "slot_queue.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _targets(node):
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr in COUNTERS
                    and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                ):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(target)}")
    assert found == []


def test_dead_letters_are_made_in_one_place() -> None:
    """``DeadLetter(...)`` is built by ``DeadLetterLog`` (and decoded from a journal by the
    replay): every dead letter is counted, kept under the cap and reported the same way."""
    makers = set()
    for path in _modules(RUNTIME):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "DeadLetter"
            ):
                makers.add(path.name)
    assert makers <= {"dead_letters.py", "replay.py"}


def _is_super(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def test_runtime_modules_use_only_public_attributes_of_each_other() -> None:
    found = []
    for path in _modules(RUNTIME):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and not _is_super(node.value)  # a subclass calling its own base
            ):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def _flow() -> wf.Flow:
    flow = wf.Flow("wired")
    flow.add("a", Forward())
    flow.add("b", Collect())
    flow.add("c", Collect())
    flow.connect("a.out", "b.inp")
    flow.connect("a.out", "c.inp")
    return flow


class WatchC(wf.Hooks):
    """Watches only what arrives at ``c.inp``."""

    def watches(self, point: str, target: str) -> bool:
        return point == "on_enqueue" and target == "c.inp"

    async def on_enqueue(self, point: wf.HookPoint) -> None:
        pass


async def test_each_connection_gets_its_delivery_function_when_wired() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(_flow(), keep_open=True)
        route = job.runners["a"].routes["out"]
        to_b, to_c = route.connections
        assert route.emit == route.emit_plain  # the fused fast path
        assert (to_b.deliver, to_c.deliver) == (to_b.plain, to_c.plain)
        hook = WatchC()
        job.add_hooks(hook)
        assert route.emit == route.emit_watched
        assert (to_b.deliver, to_c.deliver) == (to_b.plain, to_c.hooked)
        job.remove_hooks(hook)
        assert route.emit == route.emit_plain
        await job.close_input()
        await job.wait(timeout_s=10)
    async with wf.Engine(journal=LogJournal()) as engine:
        job = await engine.start(_flow(), keep_open=True)
        route = job.runners["a"].routes["out"]
        assert route.emit == route.emit_journaled  # (each connection's journaled, inlined)
        assert [c.deliver for c in route.connections] == [c.journaled for c in route.connections]
        hook = WatchC()
        job.add_hooks(hook)
        assert route.emit == route.emit_watched  # one connection is hooked now
        job.remove_hooks(hook)
        assert route.emit == route.emit_journaled
        await job.close_input()
        await job.wait(timeout_s=10)
