"""Breakpoints: where a debug session stops a job, and on what condition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import DebugError
from .conditions import Condition

if TYPE_CHECKING:
    from ..flow.graph import Flow

Kind = Literal["routine", "slot", "event", "connection"]
Scope = Literal["job", "routine"]
KINDS: tuple[str, ...] = ("routine", "slot", "event", "connection")

#: the runtime hook point each kind of breakpoint stops at
POINT_OF_KIND = {
    "routine": "on_handler_start",  # before a handler call, item in hand
    "slot": "on_enqueue",  # an item arriving at a slot, before it is queued
    "event": "on_emit",  # a routine emitting on an event
    "connection": "on_route",  # an item crossing one event -> slot connection
}


@dataclass
class Breakpoint:
    """A breakpoint of one job. ``status`` is ``ok`` or ``error`` (its condition failed
    at run time; ``error`` says how, and the hit paused the job)."""

    id: str
    kind: Kind
    target: str
    condition: Condition | None = None
    enabled: bool = True
    once: bool = False
    scope: Scope = "job"
    hit_count: int = 0
    status: str = "ok"
    error: str | None = None
    point: str = field(init=False)

    def __post_init__(self) -> None:
        self.point = POINT_OF_KIND[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "condition": self.condition.source if self.condition else None,
            "enabled": self.enabled,
            "once": self.once,
            "scope": self.scope,
            "hit_count": self.hit_count,
            "status": self.status,
            "error": self.error,
        }


def normalize_target(flow: Flow, kind: str, target: str) -> str:
    """Check ``target`` names something of ``kind`` in ``flow``; return its canonical form."""
    if kind not in KINDS:
        raise DebugError(f"breakpoint kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(target, str) or not target.strip():
        raise DebugError("breakpoint target must be a non-empty string")
    target = target.strip()
    if kind == "routine":
        if target not in flow.routines:
            raise DebugError(f"flow {flow.name!r} has no routine {target!r}")
        return target
    if kind == "connection":
        if target.count("->") != 1:
            raise DebugError(f"connection target {target!r} must look like 'a.event -> b.slot'")
        src, dst = (part.strip() for part in target.split("->"))
        canonical = f"{src} -> {dst}"
        if canonical not in {str(c) for c in flow.connections}:
            raise DebugError(f"flow {flow.name!r} has no connection {canonical!r}")
        return canonical
    routine, _, member = target.partition(".")
    r = flow.routines.get(routine)
    names = (r.slots if kind == "slot" else r.events) if r is not None else {}
    if r is None or member not in names:
        raise DebugError(f"flow {flow.name!r} has no {kind} {target!r}")
    return target


def make_breakpoint(
    flow: Flow,
    bp_id: str,
    kind: str,
    target: str,
    condition: str | None = None,
    *,
    enabled: bool = True,
    once: bool = False,
    scope: str = "job",
) -> Breakpoint:
    """Validate and build a breakpoint; ``DebugError`` (``ConditionError`` for a bad
    condition, with its position) names the problem."""
    canonical = normalize_target(flow, kind, target)
    if scope not in ("job", "routine"):
        raise DebugError(f"breakpoint scope must be 'job' or 'routine', not {scope!r}")
    compiled = Condition(condition) if condition else None
    return Breakpoint(
        id=bp_id,
        kind=kind,  # type: ignore[arg-type]
        target=canonical,
        condition=compiled,
        enabled=bool(enabled),
        once=bool(once),
        scope=scope,  # type: ignore[arg-type]
    )
