"""``DebugService``: the debugger over HTTP. Routes (``routes/debug.py``) only translate HTTP.

One ``Debugger`` per app (on ``app.state``, made in ``engine_state``) keeps a
``DebugSession`` per job, attached on first use and forgotten with its job. Every
hit — a breakpoint's or a step's — is published as a ``breakpoint`` event on the
job's event stream, and breakpoint hits are counted in the metrics.

Errors: an unknown job or breakpoint is ``NotFoundError``; changing a finished
job, or acting on a held item when nothing is held, is ``ConflictError``; a target
the flow does not have or a bad condition is ``InvalidRequestError`` (with the
condition's line and column).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from pydantic import ValidationError

from ..debug import ConditionError, Debugger, DebugSession, Hit
from ..debug.breakpoints import Breakpoint
from ..errors import DebugError
from ..metrics import EngineMetrics
from ..runtime.job import Job
from ..runtime.results import ResumeReport
from .debug_models import NewBreakpoint
from .errors import ConflictError, InvalidConditionError, InvalidRequestError, NotFoundError
from .events import EventHub
from .jsonsafe import jsonable
from .service import JobService

Failure = dict[str, Any]
#: queued items shown per slot by default
SHOWN_ITEMS = 10


class DebugService:
    """Breakpoints, inspection, editing and stepping of the jobs of one ``JobService``."""

    def __init__(self, jobs: JobService, debugger: Debugger, hub: EventHub, metrics: EngineMetrics) -> None:
        self.jobs = jobs
        self.debugger = debugger
        self.hub = hub
        self.metrics = metrics
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        debugger.on_hit.append(self._on_hit)

    # -- sessions -------------------------------------------------------------------------

    def session(self, job_id: str) -> DebugSession:
        """The job's session for a change; ``ConflictError`` once the job has finished."""
        job = self.jobs.job(job_id)
        if job.finished:
            raise ConflictError(f"job {job_id} is {job.status.value}; the debugger cannot change it")
        return self.debugger.session(job_id)

    def viewing(self, job_id: str) -> DebugSession:
        """The job's session for reading; a finished job without one gets a detached view."""
        job = self.jobs.job(job_id)
        existing = self.debugger.existing(job_id)
        if existing is not None:
            return existing
        return DebugSession(job) if job.finished else self.debugger.session(job_id)

    def job_finished(self, job: Job) -> None:
        """After a job's result is ready: forget old jobs, and the sessions of forgotten ones.

        A finished job without a debug session is released now (``Job.release``): what the
        routes read of a finished job (its status, result, dead letters, final queues) it
        answers from its result, and the parts it ran with are freed at once by reference
        counting, instead of being kept (some 50 objects per job, for ``keep_finished_jobs``
        jobs) for the cyclic GC to scan again and again. A job with a session keeps them
        until it is forgotten (the session may still read them)."""
        if job.id not in self.debugger.sessions:
            job.release()
        self.jobs.forget_old_jobs(job)
        self._wake(job.id)
        if self.debugger.sessions:
            for job_id in [j for j in self.debugger.sessions if j not in self.jobs.engine.jobs]:
                self.debugger.forget(job_id)

    def _on_hit(self, session: DebugSession, hit: Hit) -> None:
        job, bp = session.job, hit.breakpoint
        if bp is not None:
            self.metrics.breakpoint_hit(job.flow.name, bp.id)
        data = jsonable(hit.location())
        data.update(scope=bp.scope if bp else "job", paused=job.paused, at=time.time())
        self.hub.publish(job.id, "breakpoint", data)
        self._wake(job.id)

    def _wake(self, job_id: str) -> None:
        for fut in self._waiters.pop(job_id, []):
            if not fut.done():
                fut.set_result(None)

    async def wait_held(self, session: DebugSession, wait_s: float) -> None:
        """Wait up to ``wait_s`` until an item is held or the job has finished."""
        job = session.job
        self._check_wait(wait_s)
        if wait_s <= 0 or session.held or job.finished:
            return
        fut: asyncio.Future[None] = job.loop.create_future()
        self._waiters.setdefault(job.id, []).append(fut)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await fut
        finally:
            waiters = self._waiters.get(job.id)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[job.id]

    def _check_wait(self, wait_s: float) -> None:
        cap = self.jobs.settings.max_wait_s
        if wait_s > cap:
            raise InvalidRequestError(
                ("query", "wait_s"), f"must be at most {cap:g} (the server's max_wait_s)"
            )

    # -- breakpoints ----------------------------------------------------------------------

    def breakpoints(self, job_id: str) -> list[dict[str, Any]]:
        return [bp.to_dict() for bp in self.viewing(job_id).breakpoints.values()]

    def add(self, job_id: str, spec: NewBreakpoint) -> dict[str, Any]:
        return _add(self.session(job_id), spec).to_dict()

    def add_many(self, job_id: str, specs: list[Any]) -> dict[str, Any]:
        """Add each valid spec; the others are reported by index with the reason."""
        session = self.session(job_id)
        created: list[dict[str, Any]] = []
        failed: list[Failure] = []
        for index, raw in enumerate(specs):
            try:
                spec = NewBreakpoint.model_validate(raw)
                created.append(_add(session, spec).to_dict())
            except ValidationError as e:
                failed.append({"index": index, "error": _describe(e)})
            except InvalidRequestError as e:
                failed.append({"index": index, "error": e.extra["errors"][0]["msg"], **_position(e)})
        return {"created": created, "failed": failed}

    def update(
        self, job_id: str, bp_id: str, enabled: bool | None, condition: str | None, once: bool | None
    ) -> dict[str, Any]:
        session = self.session(job_id)
        _breakpoint(session, bp_id)
        try:
            bp = session.update_breakpoint(bp_id, enabled=enabled, condition=condition, once=once)
        except ConditionError as e:
            raise InvalidConditionError(("body", "condition"), e) from None
        return bp.to_dict()

    def remove(self, job_id: str, bp_id: str) -> None:
        session = self.session(job_id)
        _breakpoint(session, bp_id)
        session.remove_breakpoint(bp_id)

    def remove_many(self, job_id: str, ids: list[str]) -> dict[str, Any]:
        removed, failed = self.session(job_id).remove_breakpoints(ids)
        return {"removed": removed, "failed": [{"index": i, "error": e} for i, e in failed]}

    # -- inspecting -----------------------------------------------------------------------

    async def view(self, job_id: str, slot: str | None, limit: int, wait_s: float) -> dict[str, Any]:
        """Location, held item's routine state, queues and the first ``limit`` queued items,
        after waiting up to ``wait_s`` for something to be held."""
        session = self.viewing(job_id)
        if slot is not None and slot not in session.job.flow.slot_paths():
            raise InvalidRequestError(
                ("query", "slot"), f"flow {session.job.flow.name!r} has no slot {slot!r}"
            )
        await self.wait_held(session, wait_s)
        return _render(session, slot, limit)

    def evaluate(self, job_id: str, expr: str) -> Any:
        try:
            return jsonable(self.viewing(job_id).evaluate(expr))
        except ConditionError as e:
            raise InvalidConditionError(("body", "expr"), e) from None

    # -- acting on the held item ------------------------------------------------------------

    def held(self, job_id: str) -> DebugSession:
        """The job's session, which must hold an item (``ConflictError`` otherwise)."""
        session = self.session(job_id)
        if not session.held:
            raise ConflictError(f"nothing is held: job {job_id} is not stopped at a breakpoint")
        return session

    def held_item(self, job_id: str) -> DebugSession:
        """``held``, and what is held must be an item (not where a step could not go on)."""
        session = self.held(job_id)
        stop = session.held[0]
        if not stop.holds_item:
            raise ConflictError(f"no item is held: job {job_id}'s step stopped ({stop.hook}: {stop.reason})")
        return session

    def set_item(self, job_id: str, item: Any) -> dict[str, Any]:
        session = self.held_item(job_id)
        try:
            session.set_item(item)
        except DebugError as e:
            raise InvalidRequestError(("body", "item"), str(e)) from None
        location: dict[str, Any] = jsonable(session.location)
        return location

    def drop_item(self, job_id: str, reason: str) -> dict[str, Any]:
        session = self.held_item(job_id)
        session.drop_item(reason)
        return _render(session, None, SHOWN_ITEMS)

    def set_state(self, job_id: str, key: str, value: Any, routine: str | None) -> dict[str, Any]:
        session = self.session(job_id)
        runners = session.job.runners
        if routine is None and session.held:
            routine = session.held[0].routine
        if routine is None or routine not in runners:
            why = "nothing is held to take it from" if routine is None else "the flow has no such routine"
            raise InvalidRequestError(("body", "routine"), f"give a routine ({', '.join(runners)}): {why}")
        session.set_state(key, value, routine)
        return {"routine": routine, "state": jsonable(session.job.routine_state(routine))}

    async def step(self, job_id: str, into: bool, wait_s: float) -> dict[str, Any]:
        """Let the held item go and stop at the next point of its routine (or, ``into``,
        where what it emits arrives); wait up to ``wait_s`` for that stop."""
        self._check_wait(wait_s)
        session = self.held(job_id)
        if into:  # DebugError (409) for an item from outside the flow: resume it instead
            session.step_into()
        else:
            session.step()
        await self.wait_held(session, wait_s)
        return _render(session, None, SHOWN_ITEMS)

    async def resume(self, job_id: str) -> tuple[Job, ResumeReport]:
        session = self.session(job_id)
        return session.job, await session.resume()


def _add(session: DebugSession, spec: NewBreakpoint) -> Breakpoint:
    try:
        return session.add_breakpoint(
            spec.kind,
            spec.target,
            spec.condition or None,
            once=spec.once,
            scope=spec.scope,
            enabled=spec.enabled,
        )
    except ConditionError as e:
        raise InvalidConditionError(("body", "condition"), e) from None
    except DebugError as e:  # kind and scope are checked by the model: the target is wrong
        raise InvalidRequestError(("body", "target"), str(e)) from None


def _breakpoint(session: DebugSession, bp_id: str) -> None:
    if bp_id not in session.breakpoints:
        known = ", ".join(session.breakpoints) or "none"
        raise NotFoundError(f"job {session.job.id} has no breakpoint {bp_id!r} (breakpoints: {known})")


def _render(session: DebugSession, slot: str | None, limit: int) -> dict[str, Any]:
    raw = session.inspect(slot, limit)
    running = not session.job.finished  # a job cancelled while paused keeps its pause flag
    return {
        "status": session.job.status.value,
        "paused": raw["paused"] and running,
        "pause_reason": raw["pause_reason"] if running else None,
        "location": jsonable(raw["location"]),
        "held": raw["held"],
        "state": jsonable(raw["state"]),
        "queues": raw["queues"],
        "queued_items": {path: jsonable(items) for path, items in raw["queued_items"].items()},
        "breakpoints": raw["breakpoints"],
    }


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors(include_url=False):
        path = ".".join(str(p) for p in e["loc"])
        parts.append(f"{path}: {e['msg']}" if path else str(e["msg"]))
    return "; ".join(parts)


def _position(error: InvalidRequestError) -> dict[str, Any]:
    return {k: error.extra[k] for k in ("line", "column") if k in error.extra}
