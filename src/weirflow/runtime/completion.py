"""When routines end and jobs complete — by counting, never by polling.

Routines are grouped into strongly connected components of the flow graph (a
routine on no cycle is a component of its own). A component ends when the job
is not paused, its inputs are closed, every upstream component has ended, and
every member is idle (nothing queued that a handler could take, no call
running). Ending runs each member's ``on_end`` in flow order, letting what it
emits settle inside the component before the next one; items left in a join
slot that can never be matched are then dead-lettered as ``unconsumed``. A
cycle's routines therefore end together, when the whole cycle is quiescent.
The job completes when every component has ended.

The checks run only at the moments something can change: a runner going idle,
a component ending, inputs closing, a resume.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import Job
    from .runner import RoutineRunner


class Component:
    """A strongly connected component of routines."""

    def __init__(self, members: list[RoutineRunner], cyclic: bool) -> None:
        self.members = members
        self.cyclic = cyclic
        self.upstream: set[Component] = set()
        self.downstream: set[Component] = set()
        self.ending = False
        self.ended = False
        self.quiet: asyncio.Future[None] | None = None

    def quiescent(self) -> bool:
        return all(r.idle() for r in self.members)


def components(runners: dict[str, RoutineRunner], edges: set[tuple[str, str]]) -> list[Component]:
    """Tarjan's algorithm (iterative); components come out in topological order."""
    succ: dict[str, list[str]] = {n: [] for n in runners}
    for a, b in sorted(edges):
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in runners:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            for j in range(i, len(succ[node])):
                nxt = succ[node][j]
                if nxt not in index:
                    work.append((node, j + 1))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == node:
                        break
                found.append(group)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    order = list(runners)
    comps: dict[str, Component] = {}
    result: list[Component] = []
    for group in reversed(found):  # Tarjan emits reverse topological order
        group.sort(key=order.index)
        cyclic = len(group) > 1 or (group[0], group[0]) in edges
        comp = Component([runners[n] for n in group], cyclic)
        for n in group:
            comps[n] = comp
            runners[n].component = comp
        result.append(comp)
    for a, b in edges:
        ca, cb = comps[a], comps[b]
        if ca is not cb:
            ca.downstream.add(cb)
            cb.upstream.add(ca)
    return result


class Tracker:
    """Decides when components end and when the job completes."""

    def __init__(self, job: Job, runners: dict[str, RoutineRunner], edges: set[tuple[str, str]]) -> None:
        self.job = job
        self.components = components(runners, edges)
        self.remaining = len(self.components)

    def release(self) -> None:
        """The job was released (``Job.release``): unlink the components from each other and
        from the runners, and drop the link back to the job."""
        for comp in self.components:
            comp.members = []
            comp.upstream.clear()
            comp.downstream.clear()
        self.components = []
        del self.job

    def _can_end(self, comp: Component) -> bool:
        job = self.job
        if comp.ending or job.paused or job.finished or job.inputs_open():
            return False
        if any(not up.ended for up in comp.upstream):
            return False
        return comp.quiescent()

    def idle(self, runner: RoutineRunner) -> None:
        """A runner has nothing to do and no call running."""
        comp = runner.component
        if comp is None:
            return
        if comp.ending:
            if comp.quiet is not None and not comp.quiet.done() and comp.quiescent():
                comp.quiet.set_result(None)
            return
        self.check(comp)

    def check(self, comp: Component) -> None:
        for runner in comp.members:
            runner.wake()  # a partial batch may be handed over now that less can arrive
        if self._can_end(comp):
            comp.ending = True
            self.job.spawn(self._end(comp))

    def check_all(self) -> None:
        if self.remaining == 0:
            self.job.complete()
            return
        for comp in self.components:
            if not comp.ended:
                self.check(comp)

    def no_more_input(self, runner: RoutineRunner) -> bool:
        """No item can reach ``runner`` any more except from its own component."""
        comp = runner.component
        if comp is None or self.job.inputs_open():
            return False
        return not comp.cyclic and all(up.ended for up in comp.upstream)

    async def _end(self, comp: Component) -> None:
        job = self.job
        loop = job.loop
        for runner in comp.members:
            if runner.end_act is None:
                continue
            await job.wait_resumed(None, parked=False)
            await runner.run_on_end()
            while not comp.quiescent():
                # what on_end emitted into the component is processed before going on
                comp.quiet = loop.create_future()
                await comp.quiet
                comp.quiet = None
            if job.finished:
                return
        for runner in comp.members:
            for q in runner.queues.values():
                if q.items:
                    q.drain("unconsumed", "no matching item can arrive for this join")
        comp.ended = True
        self.remaining -= 1
        if self.remaining == 0:
            job.complete()
            return
        for down in sorted(comp.downstream, key=self.components.index):
            self.check(down)
