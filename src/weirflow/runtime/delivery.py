"""Delivery: how an emitted or sent item gets into slot queues.

Each event of a routine in a job is a ``Route`` to one ``Connection`` per slot
it is connected to. ``wire(job)`` runs when hooks are attached or change what
they watch (``Job.refresh_hooks``) and picks one delivery function for each
connection and one emit function for each route:

- *plain* (no hook watches, no journal): the item is appended when the slot has
  room, otherwise ``SlotQueue.put`` applies the slot's overflow policy;
- *journaled*: as plain, and each enqueue is recorded in the journal;
- *hooked*: ``on_route`` hooks (this connection) and ``on_enqueue`` hooks (its
  slot) may hold, replace or drop the item first.

A route whose connections are all plain and whose event no ``on_emit`` hook
watches is ``plain``: it emits with one fused loop (``Route.emit_plain``, the
engine's fast path), or, when one of its slots is shared with worker threads
(``SharedSlotQueue``, whose changes take a lock), through each connection's
function (``Route.emit_each``); a thread emits into such a route directly
(``shared_queue.emit_from_thread``). Otherwise ``Route.emit_watched`` checks the
item with the journal, runs the ``on_emit`` hooks, notes the emit on the call's
step and hands the item to each connection's function. Inputs (``send`` and starting inputs) go through
``enqueue``: the slot's ``on_enqueue`` hooks, the queue, the journal.

Every counter change happens in ``SlotQueue`` (``append``, ``put``, ``refuse``);
this module only decides which of them to call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .hooks import HookPoint
from .journal import INPUT, Step
from .replay import undelivered

if TYPE_CHECKING:
    from .context import Context
    from .job import Job
    from .runner import RoutineRunner
    from .slot_queue import SlotQueue

Deliver = Callable[[Any, "Step | None", int, int], Awaitable[None]]


async def hold(job: Job, hooks: list[Any], point: HookPoint, parks: bool) -> None:
    """Run item hooks on ``point`` in order, until one drops it. While they run, the
    handler call that emitted (``parks``) counts as being at a safe point."""
    if parks:
        job.park(1)
    try:
        for hook in hooks:
            try:
                await hook(point)
            except Exception as e:  # noqa: BLE001 - contained: the item goes on (hooks.py)
                job.hook_failed(hook, f"on_{point.kind}", e)
            if point.drop_reason is not None:
                return
    finally:
        if parks:
            job.park(-1)


async def enqueue(
    job: Job,
    q: SlotQueue,
    item: Any,
    timeout_s: float | None,
    parks: bool,
    origin: Step | str | None,
    at: int = -1,
) -> None:
    """Put ``item`` into ``q``: ``on_enqueue`` hooks (if any watch it), the overflow
    policy, the journal. ``origin`` is what the journal records as its source; ``at``
    the emit's position in ``origin.emitted`` when ``origin`` is a step."""
    if q.watched:
        point = HookPoint("enqueue", job, q.runner.name, item, slot=q.path)
        await hold(job, job.hook_set.enqueue, point, parks)
        if job.finished:  # it ended while the item was held: the end accounted for the item
            job.refuse(f"item for {q.path}")
        if point.drop_reason is not None:
            q.refuse(point.item, point.drop_reason, None, of_input=origin == INPUT)
            return
        item = point.item
    if job.finished:
        job.refuse(f"item for {q.path}")
    queued = await q.put(item, timeout_s, parks, of_input=origin == INPUT)
    if queued and job.journal is not None:
        if isinstance(origin, Step):
            origin.emit_at = at
        job.journal.enqueued(job, q.path, item, origin)


class Connection:
    """One wire ``routine.event -> routine.slot`` of a job; ``deliver`` is set by ``wire``."""

    __slots__ = ("deliver", "job", "label", "queue", "route", "watched")

    def __init__(self, route: Route, queue: SlotQueue) -> None:
        self.route = route
        self.job = route.job
        self.queue = queue
        self.label = f"{route.path} -> {queue.path}"
        self.watched = False  # an on_route hook watches this connection
        self.deliver: Deliver = self.plain

    async def plain(self, item: Any, step: Step | None, attempt: int, at: int) -> None:
        q = self.queue
        if not q.try_append(item):
            await q.put(item, q.block_timeout_s, True)

    async def journaled(self, item: Any, step: Step | None, attempt: int, at: int) -> None:
        q = self.queue
        if not q.try_append(item) and not await q.put(item, q.block_timeout_s, True):
            return  # dropped by the slot's policy (and dead-lettered)
        journal = self.job.journal
        assert journal is not None
        if step is not None:
            step.emit_at = at
        journal.enqueued(self.job, q.path, item, step)

    async def hooked(self, item: Any, step: Step | None, attempt: int, at: int) -> None:
        job, q = self.job, self.queue
        if self.watched:
            point = HookPoint(
                "route",
                job,
                self.route.runner.name,
                item,
                event=self.route.path,
                slot=q.path,
                attempt=attempt,
            )
            await hold(job, job.hook_set.route, point, parks=True)
            if point.drop_reason is not None:
                q.refuse(point.item, point.drop_reason, None)
                return
            item = point.item
        await enqueue(job, q, item, q.block_timeout_s, True, step, at)


class Route:
    """An event of one routine in one job: its connections and output; ``emit`` is set
    by ``wire``."""

    __slots__ = (
        "connections",
        "emit",
        "event",
        "job",
        "output",
        "path",
        "plain",
        "runner",
        "shared",
        "watched",
    )

    def __init__(self, runner: RoutineRunner, event: str, output: list[Any] | None) -> None:
        self.runner = runner
        self.job = runner.job
        self.event = event
        self.path = f"{runner.name}.{event}"
        self.output = output  # the job's output list, when this event is a flow output
        self.connections: tuple[Connection, ...] = ()
        self.watched = False  # an on_emit hook watches this event
        self.plain = True  # nothing watches it, its connections or its slots (set by ``wire``)
        self.shared = False  # one of its slots is shared with worker threads
        self.emit: Callable[[Any, Context], Coroutine[Any, Any, None]] = self.emit_plain

    @property
    def queues(self) -> tuple[SlotQueue, ...]:
        return tuple(c.queue for c in self.connections)

    def release(self) -> None:
        """Drop the delivery functions chosen by ``wire`` (bound methods of the route and
        its connections, so each was a reference cycle) once the job is released."""
        for c in self.connections:
            del c.deliver
        self.connections = ()
        del self.emit

    async def emit_plain(self, item: Any, ctx: Context) -> None:
        """``plain`` and no shared slot: one loop (the fast path)."""
        for c in self.connections:
            q = c.queue
            if len(q.items) < q.capacity and not q.putters:
                q.append(item)
            else:
                await q.put(item, q.block_timeout_s, True)
        out = self.output
        if out is not None:
            out.append(item)

    async def emit_each(self, item: Any, ctx: Context) -> None:
        """``plain``, with a slot shared with threads: each connection's function (locks)."""
        for c in self.connections:
            await c.deliver(item, None, ctx.attempt, -1)
        out = self.output
        if out is not None:
            out.append(item)

    async def emit_journaled(self, item: Any, ctx: Context) -> None:
        """A journal records this emit and nothing else watches it: ``emit_watched`` with
        each connection's ``journaled`` inlined (no coroutine per connection)."""
        job = self.job
        journal = job.journal
        assert journal is not None
        journal.check(item)
        step = ctx.step
        connections = self.connections
        at = -1
        if step is not None:
            emitted = step.emitted
            emitted.append((self.event, item))
            at = len(emitted) - 1  # its position, whatever emits while this one waits
            if step.delivered is not None:  # a rerun: not again where it already went
                kept = undelivered(step, self.queues, item)
                connections = tuple(c for c in connections if c.queue in kept)
        shared = self.shared
        for c in connections:
            q = c.queue
            if not shared and len(q.items) < q.capacity and not q.putters:  # (try_append, inlined)
                q.append(item)
            elif not q.try_append(item) and not await q.put(item, q.block_timeout_s, True):
                continue  # dropped by the slot's policy (and dead-lettered)
            if step is not None:
                step.emit_at = at
            journal.enqueued(job, q.path, item, step)
        out = self.output
        if out is not None:
            out.append(item)

    async def emit_journaled_one(self, item: Any, ctx: Context) -> None:
        """``emit_journaled`` for an event with one connection, to a slot not shared with
        threads, no ``on_queue_state`` hook attached: when the slot has room and the call is
        not a rerun, the journal checks and records the emit in one call
        (``Journal.emit_recorded``), then the item is queued; else ``emit_journaled``."""
        step = ctx.step
        q = self.connections[0].queue
        if step is None or step.delivered is not None or len(q.items) >= q.capacity or q.putters:
            return await self.emit_journaled(item, ctx)
        job = self.job
        journal = job.journal
        assert journal is not None
        emitted = step.emitted
        emitted.append((self.event, item))
        try:
            recorded = journal.emit_recorded(job, q.path, item, step)
        except BaseException:
            emitted.pop()  # (not emitted: as ``check`` refusing it before)
            raise
        if not recorded:
            emitted.pop()
            return await self.emit_journaled(item, ctx)
        q.append(item)
        out = self.output
        if out is not None:
            out.append(item)
        return None

    async def emit_watched(self, item: Any, ctx: Context) -> None:
        """A journal records this emit, or a hook watches it or one of its connections."""
        job = self.job
        if job.journal is not None:
            job.journal.check(item)
        if self.watched:
            point = HookPoint("emit", job, self.runner.name, item, event=self.path, attempt=ctx.attempt)
            await hold(job, job.hook_set.emit, point, parks=True)
            if point.drop_reason is not None:
                job.letters.add(self.path, point.item, point.drop_reason, None)
                return
            item = point.item
        step = ctx.step
        connections = self.connections
        at = -1
        if step is not None:
            step.emitted.append((self.event, item))
            at = len(step.emitted) - 1  # its position, whatever emits while this one waits
            if step.delivered is not None:  # a rerun: not again where it already went
                kept = undelivered(step, self.queues, item)
                connections = tuple(c for c in connections if c.queue in kept)
        for c in connections:
            await c.deliver(item, step, ctx.attempt, at)
        out = self.output
        if out is not None:
            out.append(item)


def build_routes(job: Job) -> None:
    """Give every runner of ``job`` its routes (as the flow's plan lists them)."""
    runners = job.runners
    outputs = job.outputs
    for rp in job.plan.routines:
        runner = runners[rp.name]
        for ev, output, targets in rp.routes:
            route = Route(runner, ev, outputs[output] if output is not None else None)
            route.connections = tuple(Connection(route, runners[r].queues[sl]) for r, sl in targets)
            route.shared = any(c.queue.shared for c in route.connections)
            runner.routes[ev] = route


def wire(job: Job) -> None:
    """Ask the hooks what they watch (``Hooks.watches``) and pick every connection's and
    route's function accordingly (see the module docstring)."""
    hs = job.hook_set
    journal = job.journal is not None
    # (the journal checks and records an emit to one slot in one call: ``Journal.emit_recorded``)
    fused = job.journal is not None and job.journal.shortcuts("emit_recorded")
    for q in job.queue_list():
        q.watched = hs.watching("on_enqueue", q.path)
    for name, runner in job.runners.items():
        runner.watch_start = hs.watching("on_handler_start", name)
        for route in runner.routes.values():
            route.watched = hs.watching("on_emit", route.path)
            plain = not route.watched and not journal
            for c in route.connections:
                c.watched = hs.watching("on_route", c.label)
                if c.watched or c.queue.watched:
                    c.deliver = c.hooked
                    plain = False
                else:
                    c.deliver = c.journaled if journal else c.plain
            route.plain = plain
            if not plain and not route.watched and all(c.deliver == c.journaled for c in route.connections):
                one = len(route.connections) == 1 and not route.shared and not hs.queue_state
                route.emit = route.emit_journaled_one if one and fused else route.emit_journaled
            elif not plain:
                route.emit = route.emit_watched
            else:
                route.emit = route.emit_each if route.shared else route.emit_plain
