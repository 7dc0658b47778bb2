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
import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import Job
    from .runner import RoutineRunner


class Component:
    """A strongly connected component of routines."""

    __slots__ = (
        "cyclic",
        "downstream",
        "ended",
        "ending",
        "has_on_end",
        "locks",
        "members",
        "quiet",
        "upstream",
    )

    def __init__(self, members: list[RoutineRunner], cyclic: bool) -> None:
        self.members = members
        self.cyclic = cyclic
        #: the components right up- and downstream (in the tracker's order)
        self.upstream: tuple[Component, ...] = ()
        self.downstream: tuple[Component, ...] = ()
        self.ending = False
        self.ended = False
        self.quiet: asyncio.Future[None] | None = None
        self.has_on_end = any(r.routine.has_on_end for r in members)  # (their ``end_act``)
        # the members' locks, in one order, if a member's calls run on worker threads
        self.locks: list[threading.Lock] = []
        for r in members:
            if r.threaded:
                locks = {id(r.lock): r.lock for r in members}
                self.locks = [locks[k] for k in sorted(locks)]
                break

    def quiescent(self) -> bool:
        """Every member is idle, at one moment. Workers of a threaded member change its
        counts and append to the slots it emits into while the loop looks, so member by
        member is not enough: a worker could emit into a member already seen idle and then
        go idle itself before it is looked at, and the component would end with that item
        queued (dead-lettered as ``unconsumed``). With every member's lock held (a slot
        takes its consumer's lock; a worker holds one lock at a time, so taking them in
        one order cannot deadlock) nothing changes while the loop looks."""
        locks = self.locks
        if not locks:  # only the loop changes the members' counts: one look is a moment
            for r in self.members:  # noqa: SIM110 - (a generator costs more, once per job)
                if not r.idle():
                    return False
            return True
        for lock in locks:
            lock.acquire()
        try:
            return all(r.idle_locked() for r in self.members)
        finally:
            for lock in reversed(locks):
                lock.release()


Topology = tuple[tuple[tuple[str, ...], bool, tuple[int, ...], tuple[int, ...]], ...]


def topology(names: list[str], edges: frozenset[tuple[str, str]] | set[tuple[str, str]]) -> Topology:
    """The strongly connected components of the routines ``names`` joined by ``edges``
    (Tarjan's algorithm, iterative), in topological order: for each, its members (in
    the order of ``names``), whether it is a cycle, and the indexes of the components
    downstream and upstream of it (``weirflow.runtime.plan`` keeps this per flow)."""
    succ: dict[str, list[str]] = {n: [] for n in names}
    for a, b in sorted(edges):
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in names:
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
    groups = list(reversed(found))  # Tarjan emits reverse topological order
    of: dict[str, int] = {}
    for i, group in enumerate(groups):
        group.sort(key=names.index)
        for n in group:
            of[n] = i
    down: list[set[int]] = [set() for _ in groups]
    up: list[set[int]] = [set() for _ in groups]
    for a, b in edges:
        ia, ib = of[a], of[b]
        if ia != ib:
            down[ia].add(ib)
            up[ib].add(ia)
    return tuple(
        (
            tuple(group),
            len(group) > 1 or (group[0], group[0]) in edges,
            tuple(sorted(down[i])),
            tuple(sorted(up[i])),
        )
        for i, group in enumerate(groups)
    )


def components(runners: dict[str, RoutineRunner], topo: Topology) -> list[Component]:
    """This job's components, as ``topo`` (the flow's ``topology``) describes them."""
    result: list[Component] = []
    for members, cyclic, _, _ in topo:
        comp = Component([runners[n] for n in members], cyclic)
        for r in comp.members:
            r.component = comp
        result.append(comp)
    if len(result) > 1:
        for comp, (_, _, down, up) in zip(result, topo, strict=True):
            comp.downstream = tuple(result[i] for i in down)
            comp.upstream = tuple(result[i] for i in up)
    return result


class Tracker:
    """Decides when components end and when the job completes."""

    def __init__(self, job: Job, runners: dict[str, RoutineRunner], topo: Topology) -> None:
        self.job = job
        self.components = components(runners, topo)
        self.remaining = len(self.components)
        self._ready: deque[Component] = deque()  # components ending now, in turn (``_settle``)
        self._settling = False

    def release(self) -> None:
        """The job was released (``Job.release``): unlink the components from each other and
        from the runners, and drop the link back to the job."""
        for comp in self.components:
            comp.members = []
            comp.upstream = comp.downstream = ()
        self.components = []
        del self.job

    def _can_end(self, comp: Component) -> bool:
        job = self.job
        if comp.ending or job.paused or job.finished or job.inputs_open():
            return False
        for up in comp.upstream:
            if not up.ended:
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
            if comp.has_on_end:
                self.job.spawn(self._end(comp))
            else:  # nothing to await: ended now, without a task
                self._settle(comp)

    def _settle(self, comp: Component) -> None:
        """End ``comp`` (no ``on_end`` to run) and, in turn, what its end lets end: one at a
        time from a list, not by recursion (a long chain that is already idle ends in one go)."""
        self._ready.append(comp)
        if self._settling:
            return
        self._settling = True
        try:
            while self._ready:
                self._ended(self._ready.popleft())
        finally:
            self._settling = False

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
        self._ended(comp)

    def _ended(self, comp: Component) -> None:
        """``comp``'s routines are done (their ``on_end`` ran): what is left in a join slot is
        dead-lettered, and the job completes or the components downstream may end."""
        job = self.job
        for runner in comp.members:
            joined: set[int] | None = None
            for q in runner.queues.values():
                if q.items:
                    if joined is None:
                        joined = {id(j) for a in runner.acts if a.kind == "join" for j in a.queues}
                    why = (
                        "no matching item can arrive for this join"
                        if id(q) in joined
                        else "the routine ended with the item still queued"
                    )
                    q.drain("unconsumed", why)
        comp.ended = True
        self.remaining -= 1
        if self.remaining == 0:
            job.complete()
            return
        for down in comp.downstream:  # (in topological order)
            self.check(down)
