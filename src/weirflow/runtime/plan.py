"""``FlowPlan``: what every job of a flow needs that depends only on the flow.

A job used to work it out from the flow at each start: validation, each slot's
settings, which slots threads use, every route, the flow's edges and its strongly
connected components (``completion``). For a worker running thousands of short
jobs of a few flows that was a large share of each job's cost. The plan is made
once and kept on the flow (``plan_of``); each start checks that the flow still
has the same routines, connections, outputs and slot overrides (a few tuple
comparisons) and makes a new plan if anything changed, so a flow edited between
jobs is still run as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..flow.graph import Flow, SlotSpec
    from ..flow.routine import Routine
    from .runner import RoutineRunner


@dataclass(frozen=True, slots=True)
class RoutinePlan:
    """One routine's part: its slots with their settings, and its routes."""

    name: str
    routine: Routine
    slots: tuple[tuple[str, str, SlotSpec], ...]  # slot name, path, settings
    shared: frozenset[str]  # the paths of its slots that threads use (a job without journal)
    #: by event: the flow output it feeds (``"routine.event"`` or ``None``) and the
    #: ``(routine, slot)`` pairs it is connected to, in the flow's order
    routes: tuple[tuple[str, str | None, tuple[tuple[str, str], ...]], ...]
    #: how it runs in a job without a journal (``job.runner_class(routine, True)``, which
    #: looks at every activation: once per flow, not once per job)
    threaded_class: type[RoutineRunner]


@dataclass(frozen=True, slots=True)
class FlowPlan:
    key: tuple[Any, ...]
    routines: tuple[RoutinePlan, ...]
    by_name: dict[str, RoutinePlan]
    edges: frozenset[tuple[str, str]]
    #: strongly connected components in topological order: member names (in flow
    #: order), whether the component is a cycle, the indexes of the components
    #: downstream of it (ascending) and of those upstream
    components: tuple[tuple[tuple[str, ...], bool, tuple[int, ...], tuple[int, ...]], ...]


def _key(flow: Flow) -> tuple[Any, ...]:
    overrides = flow.slot_overrides
    return (
        tuple((name, r, r.executor) for name, r in flow.routines.items()),
        tuple(flow.connections),
        tuple(flow.outputs),
        tuple((p, tuple(o.items())) for p, o in overrides.items()) if overrides else (),
    )


def plan_of(flow: Flow) -> FlowPlan:
    """The flow's plan, made (after ``flow.validate()``) if the flow is new or changed."""
    key = _key(flow)
    plan: FlowPlan | None = flow.runtime_plan
    if plan is not None and plan.key == key:
        return plan
    flow.validate()
    plan = _make(flow, key)
    flow.runtime_plan = plan
    return plan


def _make(flow: Flow, key: tuple[Any, ...]) -> FlowPlan:
    from .completion import topology
    from .job import runner_class, shared_slots

    shared = shared_slots(flow)
    outputs = set(flow.outputs)
    routines = []
    edges: set[tuple[str, str]] = set()
    for name, routine in flow.routines.items():
        slots = tuple((sl, f"{name}.{sl}", flow.slot_spec(f"{name}.{sl}")) for sl in routine.slots)
        routes = []
        for ev in routine.events:
            targets = tuple(
                (c.target, c.slot) for c in flow.connections if c.source == name and c.event == ev
            )
            edges.update((name, t) for t, _ in targets)
            path = f"{name}.{ev}"
            routes.append((ev, path if path in outputs else None, targets))
        routines.append(
            RoutinePlan(
                name=name,
                routine=routine,
                slots=slots,
                shared=frozenset(p for _, p, _ in slots if p in shared),
                routes=tuple(routes),
                threaded_class=runner_class(routine, True),
            )
        )
    frozen_edges = frozenset(edges)
    return FlowPlan(
        key=key,
        routines=tuple(routines),
        by_name={r.name: r for r in routines},
        edges=frozen_edges,
        components=topology(list(flow.routines), frozen_edges),
    )
