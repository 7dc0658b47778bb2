"""``Flow``: named routines wired event -> slot, with per-flow slot settings and outputs."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import FlowError
from .policy import Overflow
from .routine import EXECUTORS, Routine, check_process_handlers

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Connection:
    """``source.event -> target.slot``."""

    source: str
    event: str
    target: str
    slot: str

    @property
    def from_path(self) -> str:
        return f"{self.source}.{self.event}"

    @property
    def to_path(self) -> str:
        return f"{self.target}.{self.slot}"

    def __str__(self) -> str:
        return f"{self.from_path} -> {self.to_path}"


@dataclass(frozen=True)
class SlotSpec:
    """A slot's effective settings in a flow (the routine's, overridden by the flow's)."""

    capacity: int
    overflow: Overflow
    block_timeout_s: float | None


def split_path(path: str, what: str = "path") -> tuple[str, str]:
    """``"routine.member"`` -> ``("routine", "member")``, or ``FlowError``."""
    if not isinstance(path, str) or path.count(".") != 1:
        raise FlowError(f"{what} {path!r} must look like 'routine.name'")
    routine, member = path.split(".")
    if not routine or not member:
        raise FlowError(f"{what} {path!r} must look like 'routine.name'")
    return routine, member


def process_problem(name: str, routine: Routine) -> str | None:
    """What keeps ``routine`` from running with ``executor = "process"`` (if it has it)."""
    executor = routine.executor
    if executor not in EXECUTORS:
        return f"routine {name!r}: executor must be 'thread' or 'process', not {executor!r}"
    if executor != "process":
        return None
    try:
        check_process_handlers(type(routine))
        pickle.dumps(routine)
    except FlowError as e:
        return f"routine {name!r}: {e}"
    except Exception as e:  # noqa: BLE001 - whatever pickle raised says why
        return (
            f"routine {name!r} has executor = 'process' but cannot be pickled to its process "
            f"({type(e).__name__}: {e}); define its class at module level, with picklable configuration"
        )
    return None


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or "." in name or "->" in name or name.strip() != name:
        raise FlowError(f"routine name {name!r} must be a non-empty string without '.', '->' or spaces")


class Flow:
    """A graph of named routines. Build it with ``add``, ``connect`` and ``output``.

    An event may feed several slots (each gets every item); a slot may be fed by
    several events; cycles are allowed. ``validate()`` raises one ``FlowError``
    listing every problem found.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise FlowError(f"flow name must be a non-empty string, not {name!r}")
        self.name = name
        self.routines: dict[str, Routine] = {}
        self.connections: list[Connection] = []
        self.outputs: list[str] = []
        self.slot_overrides: dict[str, dict[str, Any]] = {}
        #: the runtime's compiled form of this flow (``weirflow.runtime.plan``), remade
        #: when the routines, connections, outputs or slot overrides change
        self.runtime_plan: Any = None

    def __repr__(self) -> str:
        return f"Flow({self.name!r}, routines={list(self.routines)})"

    # -- building -------------------------------------------------------------

    def add(self, name: str, routine: Routine) -> Flow:
        """Add ``routine`` (an instance, or a ``@wf.routine`` function) under ``name``."""
        _check_name(name)
        if name in self.routines:
            raise FlowError(f"flow {self.name!r} already has a routine named {name!r}")
        if isinstance(routine, type) and issubclass(routine, Routine):
            raise FlowError(f"add({name!r}, ...) needs a routine instance: write {routine.__name__}()")
        if not isinstance(routine, Routine):
            raise FlowError(f"add({name!r}, ...) needs a wf.Routine or @wf.routine function, not {routine!r}")
        self.routines[name] = routine
        return self

    def _routine(self, name: str) -> Routine:
        try:
            return self.routines[name]
        except KeyError:
            known = ", ".join(self.routines) or "none"
            raise FlowError(f"flow {self.name!r} has no routine {name!r} (routines: {known})") from None

    def _event(self, path: str) -> tuple[str, str]:
        rname, ev = split_path(path, "event")
        r = self._routine(rname)
        if ev not in r.events:
            known = ", ".join(r.events) or "none"
            raise FlowError(f"routine {rname!r} has no event {ev!r} (events: {known})")
        return rname, ev

    def _slot(self, path: str) -> tuple[str, str]:
        rname, sl = split_path(path, "slot")
        r = self._routine(rname)
        if sl not in r.slots:
            known = ", ".join(r.slots) or "none"
            raise FlowError(f"routine {rname!r} has no slot {sl!r} (slots: {known})")
        return rname, sl

    def check_event(self, path: str) -> tuple[str, str]:
        """``(routine, event)`` of ``"routine.event"``; ``FlowError`` if this flow has no such event."""
        return self._event(path)

    def check_slot(self, path: str) -> tuple[str, str]:
        """``(routine, slot)`` of ``"routine.slot"``; ``FlowError`` if this flow has no such slot."""
        return self._slot(path)

    def connect(self, source: str, target: str) -> Flow:
        """Connect ``"routine.event"`` to ``"routine.slot"``."""
        src, ev = self._event(source)
        dst, sl = self._slot(target)
        conn = Connection(src, ev, dst, sl)
        if conn in self.connections:
            raise FlowError(f"connection {conn} is already in flow {self.name!r}")
        self.connections.append(conn)
        return self

    def output(self, event: str) -> Flow:
        """Collect every item emitted on ``"routine.event"`` into ``result.outputs``."""
        self._event(event)
        if event not in self.outputs:
            self.outputs.append(event)
        return self

    def slot(
        self,
        path: str,
        *,
        capacity: int | None = None,
        overflow: Overflow | str | None = None,
        block_timeout_s: float | None = None,
    ) -> Flow:
        """Override a slot's capacity, overflow policy or block timeout in this flow."""
        self._slot(path)
        over: dict[str, Any] = dict(self.slot_overrides.get(path, {}))
        over.update(
            slot_settings(path, capacity=capacity, overflow=overflow, block_timeout_s=block_timeout_s)
        )
        self.slot_overrides[path] = over
        return self

    # -- reading --------------------------------------------------------------

    def slot_spec(self, path: str) -> SlotSpec:
        rname, sl = self._slot(path)
        s = self.routines[rname].slots[sl]
        over = self.slot_overrides.get(path, {})
        return SlotSpec(
            capacity=over.get("capacity", s.capacity),
            overflow=over.get("overflow", s.overflow),
            block_timeout_s=over.get("block_timeout_s", s.block_timeout_s),
        )

    def slot_paths(self) -> Iterator[str]:
        for rname, r in self.routines.items():
            for sl in r.slots:
                yield f"{rname}.{sl}"

    def validate(self) -> None:
        """Raise ``FlowError`` listing every problem, or return ``None``."""
        problems: list[str] = []
        if not self.routines:
            problems.append("flow has no routines")
        for rname, r in self.routines.items():
            for sl in r.unbound_slots():
                problems.append(
                    f"slot {rname}.{sl} has no handler (bind one with @slot.handler, batch or join)"
                )
            problem = process_problem(rname, r)
            if problem:
                problems.append(problem)
        for out in self.outputs:
            try:
                self._event(out)
            except FlowError as e:
                problems.append(f"output {out!r}: {e}")
        for conn in self.connections:
            for path, check in ((conn.from_path, self._event), (conn.to_path, self._slot)):
                try:
                    check(path)
                except FlowError as e:
                    problems.append(f"connection {conn}: {e}")
        if problems:
            raise FlowError(f"flow {self.name!r} is invalid:\n  - " + "\n  - ".join(problems), problems)

    def to_dict(self) -> dict[str, Any]:
        """The flow as plain data, in the shape of a flow file."""
        routines: dict[str, Any] = {}
        for name, r in self.routines.items():
            entry: dict[str, Any] = {"use": r.use_path()}
            cfg = r.config()
            if cfg:
                entry["with"] = cfg
            if r.executor != type(r).executor:
                entry["executor"] = r.executor
            routines[name] = entry
        slots: dict[str, Any] = {}
        for path, over in self.slot_overrides.items():
            if over:
                slots[path] = {k: (v.value if isinstance(v, Overflow) else v) for k, v in over.items()}
        data: dict[str, Any] = {"name": self.name, "routines": routines}
        if slots:
            data["slots"] = slots
        data["connections"] = [str(c) for c in self.connections]
        data["outputs"] = list(self.outputs)
        return data

    def describe(self) -> dict[str, Any]:
        """The graph for tools: routines with slots (settings) and events, connections, outputs."""
        routines: dict[str, Any] = {}
        for name, r in self.routines.items():
            slots = {}
            for sl in r.slots:
                spec = self.slot_spec(f"{name}.{sl}")
                slots[sl] = {
                    "capacity": spec.capacity,
                    "overflow": spec.overflow.value,
                    "block_timeout_s": spec.block_timeout_s,
                }
            routines[name] = {
                "class": type(r).__qualname__,
                "slots": slots,
                "events": list(r.events),
                "concurrency": r.concurrency,
                "executor": r.executor,
                "activations": [
                    {"kind": a.kind, "slots": list(a.slots), "handler": a.method} for a in r.activations
                ],
            }
        return {
            "name": self.name,
            "routines": routines,
            "connections": [str(c) for c in self.connections],
            "outputs": list(self.outputs),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> Flow:
        """Build a flow from flow-file data; ``FlowError`` names ``source``, key path and problem."""
        from .files import flow_from_dict

        return flow_from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> Flow:
        """Load a YAML (or JSON) flow file."""
        from .files import load_flow_file

        return load_flow_file(path)


def slot_settings(
    path: str,
    *,
    capacity: Any = None,
    overflow: Any = None,
    block_timeout_s: Any = None,
) -> dict[str, Any]:
    """The slot overrides given (``None``: not given), checked: ``FlowError`` for a bad value.
    ``Flow.slot`` applies them; a flow file checks them even when the routine did not load."""
    over: dict[str, Any] = {}
    if capacity is not None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise FlowError(f"slot {path!r}: capacity must be an integer >= 1, not {capacity!r}")
        over["capacity"] = capacity
    if overflow is not None:
        over["overflow"] = Overflow.parse(overflow)
    if block_timeout_s is not None:
        if (
            not isinstance(block_timeout_s, int | float)
            or isinstance(block_timeout_s, bool)
            or block_timeout_s < 0
        ):
            raise FlowError(f"slot {path!r}: block_timeout_s must be a number >= 0, not {block_timeout_s!r}")
        over["block_timeout_s"] = block_timeout_s
    return over
