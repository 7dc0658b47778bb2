"""``DebugSession``: breakpoints, held items, stepping and editing for one job.

The session is a ``wf.Hooks`` attached to its job. ``watches()`` tells the
runtime exactly which points have breakpoints, so everything else stays on the
fast lane. A hit *holds* the item inside its hook point: the producer's emit
(or the handler call) waits, nothing is dropped and the accounting invariant
holds, while the job (scope ``job``) or the routine (scope ``routine``) is paused.

A step always comes back. While it runs, the consumers of slots where a call waits
for room may take items (``Job.may_run``), so a stepped emit into a full slot goes on;
when nothing can move any more before the step's next point (``runtime.stepping``),
the session stops there instead, at a location of kind ``blocked`` (the slot whose
room never comes, and why) or ``idle`` (the stepped routine has nothing to do). Such
a stop holds no item; the job stays paused.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DebugError
from ..runtime.hooks import HookPoint, Hooks
from ..runtime.results import ResumeReport, fill_warnings
from ..runtime.stepping import blocking_slot, next_quiet, stalled
from .breakpoints import POINT_OF_KIND, Breakpoint, make_breakpoint
from .conditions import Condition, ConditionError, to_plain

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..runtime.job import Job
    from ..runtime.results import JobStatus

_KIND_OF_POINT = {point: kind for kind, point in POINT_OF_KIND.items()}
#: where a step that cannot go on stops (no item is held there)
STOPS = ("blocked", "idle")
_KIND_OF_POINT.update({stop: stop for stop in STOPS})
_VARIABLES = frozenset({"item", "routine", "slot", "event", "attempt", "queue", "state"})
_EMPTY_CONTEXT: dict[str, Any] = {
    "item": None,
    "routine": "",
    "slot": "",
    "event": "",
    "attempt": 0,
    "queue": {},
    "state": {},
}


@dataclass
class Hit:
    """An item held at a hook point, by a breakpoint or a step."""

    point: HookPoint
    hook: str
    breakpoint: Breakpoint | None
    routine: str | None
    release: asyncio.Future[None] = field(repr=False)
    reason: str | None = None  # why a step stopped here (``blocked`` and ``idle`` stops)

    @property
    def holds_item(self) -> bool:
        """``False`` for a stop of a step that could not go on: nothing waits on it."""
        return self.hook not in STOPS

    def location(self) -> dict[str, Any]:
        p = self.point
        return {
            "breakpoint": self.breakpoint.id if self.breakpoint else None,
            "kind": _KIND_OF_POINT[self.hook],
            "target": _target(self.hook, p),
            "routine": self.routine,
            "slot": p.slot,
            "event": p.event,
            "attempt": p.attempt,
            "item": p.item,
            "reason": self.reason,
        }


@dataclass
class _Trap:
    """Stop at the next point of ``routine`` (``step``) or where what it emits arrives
    at a slot (``into``)."""

    mode: str
    routine: str
    routed: set[tuple[str, int]] = field(default_factory=set)


def _target(hook: str, p: HookPoint) -> str:
    if hook in ("on_handler_start", "idle"):
        return p.routine or ""
    if hook in ("on_enqueue", "blocked"):
        return p.slot or ""
    if hook == "on_emit":
        return p.event or ""
    return p.connection or ""


class DebugSession(Hooks):
    """The debugger of one job. Create with ``DebugSession.attach(job)``; use on the loop."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.breakpoints: dict[str, Breakpoint] = {}
        self._index: dict[tuple[str, str], list[Breakpoint]] = {}
        self._held: list[Hit] = []
        self._trap: _Trap | None = None
        self._next_id = 1
        self._routine_pauses: set[str] = set()
        self._hit_waiters: list[asyncio.Future[None]] = []
        self._watcher: asyncio.Task[None] | None = None  # of the running step
        self._going_on = 0  # released holds whose item has not gone on yet
        self.hits = 0
        self.on_hit: list[Callable[[DebugSession, Hit], None]] = []

    @classmethod
    def attach(cls, job: Job) -> DebugSession:
        session = cls(job)
        job.add_hooks(session)
        return session

    def detach(self) -> None:
        """Release everything held and stop watching the job."""
        self._end_step()
        self._release_all()
        self.breakpoints.clear()
        self._index.clear()
        self.job.remove_hooks(self)

    # -- breakpoints ----------------------------------------------------------------

    def add_breakpoint(
        self,
        kind: str,
        target: str,
        condition: str | None = None,
        *,
        once: bool = False,
        scope: str = "job",
        enabled: bool = True,
    ) -> Breakpoint:
        """Add a breakpoint; ``DebugError`` (``ConditionError`` with position) if invalid."""
        bp = make_breakpoint(
            self.job.flow,
            f"bp{self._next_id}",
            kind,
            target,
            condition,
            once=once,
            scope=scope,
            enabled=enabled,
        )
        self._next_id += 1  # only once the breakpoint is valid
        self.breakpoints[bp.id] = bp
        self._reindex()
        return bp

    def add_breakpoints(self, specs: list[dict[str, Any]]) -> tuple[list[Breakpoint], list[tuple[int, str]]]:
        """Add many; returns the created ones and ``(index, error)`` for each that failed."""
        created: list[Breakpoint] = []
        failed: list[tuple[int, str]] = []
        for i, spec in enumerate(specs):
            try:
                if not isinstance(spec, dict):
                    raise DebugError("each breakpoint must be an object")
                unknown = set(spec) - {"kind", "target", "condition", "once", "scope", "enabled"}
                if unknown:
                    raise DebugError(f"unknown field(s): {', '.join(sorted(unknown))}")
                created.append(
                    self.add_breakpoint(
                        spec.get("kind", ""),
                        spec.get("target", ""),
                        spec.get("condition"),
                        once=bool(spec.get("once", False)),
                        scope=spec.get("scope", "job"),
                        enabled=bool(spec.get("enabled", True)),
                    )
                )
            except DebugError as e:
                failed.append((i, str(e)))
        return created, failed

    def get_breakpoint(self, bp_id: str) -> Breakpoint:
        try:
            return self.breakpoints[bp_id]
        except KeyError:
            raise DebugError(f"no breakpoint {bp_id!r}") from None

    def update_breakpoint(
        self,
        bp_id: str,
        *,
        enabled: bool | None = None,
        condition: str | None = None,
        once: bool | None = None,
    ) -> Breakpoint:
        """Enable/disable, change the condition (``""`` removes it) or ``once``."""
        bp = self.get_breakpoint(bp_id)
        if condition is not None:
            bp.condition = Condition(condition) if condition else None
            bp.status, bp.error = "ok", None
        if enabled is not None:
            bp.enabled = enabled
        if once is not None:
            bp.once = once
        self._reindex()
        return bp

    def remove_breakpoint(self, bp_id: str) -> None:
        self.get_breakpoint(bp_id)
        del self.breakpoints[bp_id]
        self._reindex()

    def remove_breakpoints(self, ids: list[str]) -> tuple[list[str], list[tuple[int, str]]]:
        removed: list[str] = []
        failed: list[tuple[int, str]] = []
        for i, bp_id in enumerate(ids):
            try:
                self.remove_breakpoint(bp_id)
                removed.append(bp_id)
            except DebugError as e:
                failed.append((i, str(e)))
        return removed, failed

    def _reindex(self) -> None:
        index: dict[tuple[str, str], list[Breakpoint]] = {}
        for bp in self.breakpoints.values():
            if bp.enabled:
                index.setdefault((bp.point, bp.target), []).append(bp)
        self._index = index
        self.job.refresh_hooks()

    # -- what the runtime asks -----------------------------------------------------------

    def watches(self, point: str, target: str) -> bool:
        trap = self._trap
        if trap is not None:
            r = trap.routine
            if point == "on_handler_start" and target == r:
                return True
            if point in ("on_emit", "on_route") and target.startswith(f"{r}."):
                return True
            if point == "on_enqueue" and (trap.mode == "into" or target.startswith(f"{r}.")):
                return True
        return (point, target) in self._index

    async def on_emit(self, point: HookPoint) -> None:
        await self._at("on_emit", point)

    async def on_route(self, point: HookPoint) -> None:
        trap = self._trap
        if trap is not None and trap.mode == "into" and point.routine == trap.routine and point.slot:
            trap.routed.add((point.slot, id(point.item)))
        await self._at("on_route", point)

    async def on_enqueue(self, point: HookPoint) -> None:
        await self._at("on_enqueue", point)

    async def on_handler_start(self, point: HookPoint) -> None:
        await self._at("on_handler_start", point)

    def on_job_status(self, job: Job, status: JobStatus, reason: str | None) -> None:
        if job.finished:  # nothing will be hit any more: wake ``wait_for_hit``
            self._end_step()
            # let every held item go: its sender (a send is not a job task, so nothing cancels
            # it) then finds the job finished, and the job's end has dead-lettered the item
            self._release_all()
            self._wake_hit_waiters()

    async def _at(self, hook: str, point: HookPoint) -> None:
        trap = self._trap
        if trap is not None and self._trap_matches(trap, hook, point):
            self._end_step()
            await self._hold(hook, point, None, "job")
            return
        for bp in self._index.get((hook, _target(hook, point)), ()):
            if not bp.enabled:
                continue
            if bp.condition is not None:
                try:
                    if not bp.condition.test(self._context(point, bp.condition.variables)):
                        continue
                except ConditionError as e:
                    bp.status, bp.error = "error", str(e)  # pause rather than silently go on
            bp.hit_count += 1
            if bp.once:
                del self.breakpoints[bp.id]
                self._reindex()
            await self._hold(hook, point, bp, bp.scope)
            return

    def _trap_matches(self, trap: _Trap, hook: str, point: HookPoint) -> bool:
        if trap.mode == "step":
            return point.routine == trap.routine
        if hook == "on_enqueue" and point.slot is not None:
            key = (point.slot, id(point.item))
            if key in trap.routed:
                return True
        return False

    def _context(self, point: HookPoint, names: frozenset[str] | None = None) -> dict[str, Any]:
        """The plain-data variables a condition sees (only ``names``, if given)."""
        job = self.job
        routine = point.routine or ""
        context: dict[str, Any] = {}
        want = _VARIABLES if names is None else names
        if "item" in want:
            context["item"] = to_plain(point.item)
        if "routine" in want:
            context["routine"] = routine
        if "slot" in want:
            context["slot"] = point.slot or ""
        if "event" in want:
            context["event"] = point.event or ""
        if "attempt" in want:
            context["attempt"] = point.attempt
        if "queue" in want:
            queue: dict[str, Any] = {}
            if point.slot is not None:
                q = job.queue_stats(point.slot)
                queue = {"size": q.size, "capacity": q.capacity, "usage": q.usage}
            context["queue"] = queue
        if "state" in want:
            context["state"] = to_plain(job.routine_state(routine)) if routine in job.runners else {}
        return context

    async def _hold(self, hook: str, point: HookPoint, bp: Breakpoint | None, scope: str) -> None:
        job = self.job
        hit = Hit(point, hook, bp, point.routine, job.loop.create_future())
        if scope == "routine" and point.routine is not None:
            job.pause_routine(point.routine)
            self._routine_pauses.add(point.routine)
        else:
            job.request_pause(f"breakpoint:{bp.id}" if bp else "step")
        self._stopped(hit)
        try:
            await asyncio.shield(hit.release)
        finally:
            if hit in self._held:
                self._held.remove(hit)
            elif hit.release.done() and not hit.release.cancelled():
                self._went_on()

    def _stopped(self, hit: Hit) -> None:
        self._held.append(hit)
        self.hits += 1
        for callback in self.on_hit:
            callback(self, hit)
        self._wake_hit_waiters()

    def _wake_hit_waiters(self) -> None:
        waiters, self._hit_waiters = self._hit_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- a step in progress ----------------------------------------------------------------

    def _went_on(self) -> None:
        """A released item went on: the step may be stuck now, so look again."""
        self._going_on -= 1
        if self._going_on == 0 and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = self.job.loop.create_task(self._watch(), name=f"weirflow:{self.job.id}:step")

    async def _watch(self) -> None:
        """Until the step reaches its point: each time the job goes quiet, stop the step
        if nothing can move any more (``runtime.stepping.stalled``)."""
        job = self.job
        while self._trap is not None and not job.finished:
            if self._going_on == 0 and stalled(job):
                self._stop_stuck()
                return
            await next_quiet(job)

    def _stop_stuck(self) -> None:
        trap = self._trap
        assert trap is not None
        self._end_step()
        job = self.job
        blocked = blocking_slot(job, trap.routine)
        if blocked is not None:
            slot, reason = blocked
            hook = "blocked"
        else:
            slot, hook = None, "idle"
            reason = f"routine {trap.routine!r} has nothing to do while the job is paused"
        point = HookPoint(hook, job, trap.routine, None, slot=slot)
        self._stopped(Hit(point, hook, None, trap.routine, job.loop.create_future(), reason=reason))

    def _end_step(self) -> None:
        """The step is over (it reached its point, stopped, or the session let go)."""
        self._trap = None
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        if not self.job.finished:
            self.job.allow_while_paused(())
            self.job.refresh_hooks()

    # -- the session's controls ------------------------------------------------------------

    @property
    def held(self) -> list[Hit]:
        return list(self._held)

    @property
    def location(self) -> dict[str, Any] | None:
        """Where the job stopped (the oldest held item), or ``None``."""
        return self._held[0].location() if self._held else None

    async def wait_for_hit(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Wait until an item is held, or a step stopped where it could not go on; return
        the location. ``DebugError`` if nothing is within ``timeout_s`` or the job finished."""
        while not self._held:
            if self.job.finished:
                raise DebugError(f"job {self.job.id} is {self.job.status.value}: nothing will be hit")
            fut: asyncio.Future[None] = self.job.loop.create_future()
            self._hit_waiters.append(fut)
            try:
                async with asyncio.timeout(timeout_s):
                    await fut
            except TimeoutError:
                raise DebugError(f"no breakpoint was hit within {timeout_s}s") from None
            finally:
                if fut in self._hit_waiters:
                    self._hit_waiters.remove(fut)
        return self._held[0].location()

    def _current(self) -> Hit:
        if not self._held:
            raise DebugError("nothing is held: the job is not stopped at a breakpoint")
        return self._held[0]

    def _held_item(self) -> Hit:
        hit = self._current()
        if not hit.holds_item:
            raise DebugError(f"no item is held: the step stopped ({hit.hook}: {hit.reason})")
        return hit

    def inspect(self, slot: str | None = None, limit: int = 10) -> dict[str, Any]:
        """The held item, its routine's state, every slot's stats and the first
        ``limit`` queued items of ``slot`` (or of every slot)."""
        job = self.job
        hit = self._held[0] if self._held else None
        routine = hit.routine if hit else None
        queues = job.queues()
        slots = [slot] if slot is not None else list(queues)
        return {
            "paused": job.paused or bool(self._held),
            "pause_reason": job.pause_reason,
            "location": hit.location() if hit else None,
            "held": len(self._held),
            "state": dict(job.routine_state(routine)) if routine in job.runners else None,
            "queues": {k: v.to_dict() for k, v in queues.items()},
            "queued_items": {s: job.queued_items(s, limit) for s in slots},
            "breakpoints": [bp.to_dict() for bp in self.breakpoints.values()],
        }

    def set_item(self, value: Any) -> None:
        """Replace the held item (a batch or join call needs as many items as it had)."""
        hit = self._held_item()
        held = hit.point.item
        if hit.point.grouped and (not isinstance(value, list | tuple) or len(value) != len(held)):
            raise DebugError(f"this call holds {len(hit.point.item)} items; give a list of as many")
        hit.point.item = value

    def drop_item(self, reason: str) -> None:
        """Dead-letter the held item with reason ``debugger:<reason>``; the job stays paused."""
        hit = self._held_item()
        hit.point.drop(f"debugger:{reason}")
        self._release(hit)

    def set_state(self, key: str, value: Any, routine: str | None = None) -> None:
        """Set ``ctx.state[key]`` of ``routine`` (default: the held item's routine)."""
        name = routine or (self._held[0].routine if self._held else None)
        if name is None or name not in self.job.runners:
            raise DebugError("give a routine: nothing is held to take it from")
        self.job.routine_state(name)[key] = value

    def evaluate(self, expr: str) -> Any:
        """Evaluate a CEL expression at the current location (plain data in, plain out)."""
        cond = Condition(expr)
        context = self._context(self._held[0].point) if self._held else dict(_EMPTY_CONTEXT)
        return cond.value(context)

    def step(self) -> None:
        """Let the held item go; stop at the next hook point of the same routine (or where
        the step cannot go on: a ``blocked`` or ``idle`` stop)."""
        self._step("step")

    def step_into(self) -> None:
        """Let the held item go; stop when what its routine emits next arrives at a slot
        (or where the step cannot go on)."""
        self._step("into")

    def _step(self, mode: str) -> None:
        hit = self._current()
        routine = hit.routine
        if routine is None:
            raise DebugError("this item comes from outside the flow; use resume")
        if self._trap is not None:
            self._end_step()
        self._trap = _Trap(mode, routine)
        if hit.hook == "on_route" and mode == "into" and hit.point.slot is not None:
            self._trap.routed.add((hit.point.slot, id(hit.point.item)))
        self.job.refresh_hooks()
        if self.job.paused:
            self.job.allow_while_paused({routine})
        if routine in self._routine_pauses:
            self._routine_pauses.discard(routine)
            self.job.resume_routine(routine)
        self._release(hit)
        self._watcher = self.job.loop.create_task(self._watch(), name=f"weirflow:{self.job.id}:step")

    async def resume(self) -> ResumeReport:
        """Release every held item and let the job run; warnings name full slots."""
        job = self.job
        self._end_step()
        self._release_all()
        for routine in self._routine_pauses:
            job.resume_routine(routine)
        self._routine_pauses.clear()
        if job.paused:
            return await job.resume()
        snapshot = job.queues()
        return ResumeReport(paused_s=0.0, warnings=fill_warnings(snapshot), queues=snapshot)

    def _release(self, hit: Hit) -> None:
        if hit in self._held:
            self._held.remove(hit)
        if not hit.release.done():
            hit.release.set_result(None)
            if hit.holds_item:
                self._going_on += 1

    def _release_all(self) -> None:
        for hit in list(self._held):
            self._release(hit)
