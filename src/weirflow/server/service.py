"""``JobService``: what the routes do, over one ``Engine``. Routes only translate HTTP.

Errors: an unknown job or flow is ``NotFoundError``; a slot the flow does not have is
``InvalidRequestError`` with the field path; a job in the wrong state is ``ConflictError`` with
the engine's message; a slot that stays full past the request's bounded
timeout is ``SlotStayedFullError`` saying how many items were queued first — an
item is either queued or reported refused, never dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import AsyncIterator
from typing import Any

from ..errors import JobError, JobTimeoutError, SlotFullError
from ..flow.graph import Flow
from ..runtime.engine import Engine
from ..runtime.job import Job
from ..runtime.results import JobResult, JobStatus, ResumeReport
from . import views
from .errors import ConflictError, InvalidRequestError, NotFoundError, SlotStayedFullError
from .events import EventHub
from .settings import Settings
from .sse import event_stream


class JobService:
    """The server's view of one engine: flows, jobs, inputs, queues and event streams."""

    def __init__(self, engine: Engine, hub: EventHub, settings: Settings) -> None:
        self.engine = engine
        self.hub = hub
        self.settings = settings
        self.ready = True
        # finished jobs, oldest first: (created_at, a tie-breaker, id) (forget_old_jobs)
        self._finished: list[tuple[float, int, str]] = []
        self._finished_seq = 0

    async def shutdown(self) -> None:
        """Stop: cancel unfinished jobs, let their last events out, end every stream."""
        self.ready = False
        await self.engine.close()
        await self.hub.aclose()

    # -- flows --------------------------------------------------------------------------

    def flows(self) -> list[Flow]:
        return list(self.engine.flows.values())

    def flow(self, name: str) -> Flow:
        flow = self.engine.flows.get(name)
        if flow is None:
            known = ", ".join(sorted(self.engine.flows)) or "none"
            raise NotFoundError(f"no flow named {name!r} (flows: {known})")
        return flow

    def flow_queues(self, name: str) -> dict[str, Any]:
        flow = self.flow(name)
        running = [j for j in self.engine.jobs.values() if j.flow is flow and not j.finished]
        return views.flow_queues(flow, running)

    # -- jobs ---------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        job = self.engine.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        return job

    def list_jobs(
        self, flow: str | None, status: JobStatus | None, limit: int, offset: int
    ) -> tuple[list[Job], int]:
        """Jobs oldest first, filtered; returns one page and the total matching."""
        jobs = [
            j
            for j in self.engine.jobs.values()
            if (flow is None or j.flow.name == flow) and (status is None or j.status is status)
        ]
        return jobs[offset : offset + limit], len(jobs)

    async def start(self, flow_name: str, inputs: dict[str, list[Any]], keep_open: bool) -> Job:
        flow = self.flow(flow_name)
        slots = set(flow.slot_paths())
        for path in inputs:
            if path not in slots:
                raise InvalidRequestError(("body", "inputs", path), _no_slot(flow, path))
        return await self.engine.start(flow, inputs, keep_open=keep_open)

    async def send(self, job_id: str, slot: str, items: list[Any], timeout_s: float) -> int:
        """Send ``items`` in order, all within ``timeout_s``; the number sent, or an error
        carrying ``accepted`` (the items before it were queued, it and those after were not)."""
        job = self.job(job_id)
        if slot not in set(job.flow.slot_paths()):
            raise InvalidRequestError(("body", "slot"), _no_slot(job.flow, slot))
        _at_most(("body", "timeout_s"), timeout_s, self.settings.max_send_timeout_s, "max_send_timeout_s")
        deadline = time.monotonic() + timeout_s
        for accepted, item in enumerate(items):
            try:
                await job.send(slot, item, timeout_s=max(0.0, deadline - time.monotonic()))
            except SlotFullError as e:
                retry = self.settings.retry_after_s
                raise SlotStayedFullError(
                    f"{e}; {accepted} of {len(items)} item(s) accepted, the rest were not",
                    headers={"Retry-After": str(retry)},
                    accepted=accepted,
                    slot=slot,
                    retry_after_s=retry,
                    capacity=e.capacity,
                ) from None
            except JobError as e:
                raise ConflictError(
                    f"{e}; {accepted} of {len(items)} item(s) accepted", accepted=accepted
                ) from None
        return len(items)

    def unfinished(self, job_id: str, action: str) -> Job:
        """The job, or ``ConflictError`` if it has finished: one rule for every change of a
        job over HTTP (pause, resume, close, cancel here; the durable routes follow the same)."""
        job = self.job(job_id)
        if job.status.finished:
            raise ConflictError(f"job {job_id} is {job.status.value}; it cannot be {action}")
        return job

    async def close_input(self, job_id: str) -> Job:
        job = self.unfinished(job_id, "closed")
        await job.close_input()
        return job

    async def pause(self, job_id: str, reason: str) -> Job:
        """Pause; wait up to ``pause_wait_s`` for running calls to reach a safe point."""
        job = self.unfinished(job_id, "paused")
        try:
            job.request_pause(reason)
        except JobError as e:
            raise ConflictError(str(e)) from None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.pause_wait_s):
                await job.pause(reason)
        return job

    async def resume(self, job_id: str) -> tuple[Job, ResumeReport]:
        job = self.unfinished(job_id, "resumed")
        try:
            report = await job.resume()
        except JobError as e:
            raise ConflictError(str(e)) from None
        return job, report

    async def cancel(self, job_id: str) -> Job:
        job = self.unfinished(job_id, "cancelled")
        await job.cancel()
        return job

    async def result(self, job_id: str, wait_s: float = 0) -> JobResult:
        """The finished job's result, waiting up to ``wait_s`` for it; ``ConflictError`` if not ready."""
        job = self.job(job_id)
        _at_most(("query", "wait_s"), wait_s, self.settings.max_wait_s, "max_wait_s")
        if job.result is None and wait_s > 0:
            with contextlib.suppress(JobTimeoutError):
                await job.wait(wait_s)
        if job.result is None:
            raise ConflictError(f"job {job_id} is {job.status.value}; its result is not ready")
        return job.result

    def events(self, job_id: str, last_event_id: int) -> AsyncIterator[bytes]:
        self.job(job_id)
        log = self.hub.log(job_id)
        return event_stream(log, last_event_id, self.settings.sse_heartbeat_s)

    def forget_old_jobs(self, finished: Job | None = None) -> None:
        """Keep at most ``keep_finished_jobs`` finished jobs (the oldest go first); call with
        each job whose result is ready. (A heap of the finished jobs by age, not a scan of
        every job: this runs once per job.)"""
        if finished is not None:
            self._finished_seq += 1
            heapq.heappush(self._finished, (finished.created_at, self._finished_seq, finished.id))
        jobs = self.engine.jobs
        keep = self.settings.keep_finished_jobs
        heap = self._finished
        while len(heap) > keep:
            _, _, job_id = heapq.heappop(heap)
            job = jobs.get(job_id)
            if job is not None and job.finished:
                self.engine.forget(job_id)
                self.hub.forget(job_id)

    # -- health -------------------------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        by_status: dict[str, int] = {s.value: 0 for s in JobStatus}
        full = []
        for job in self.engine.jobs.values():
            by_status[job.status.value] += 1
            if not job.finished:
                slots = [path for path, s in job.queues().items() if s.state == "full"]
                if slots:
                    full.append({"job": job.id, "flow": job.flow.name, "slots": slots})
        return {"status": "ready", "flows": len(self.engine.flows), "jobs": by_status, "full_slots": full}


def _no_slot(flow: Flow, path: str) -> str:
    return f"flow {flow.name!r} has no slot {path!r} (slots: {', '.join(flow.slot_paths())})"


def _at_most(loc: tuple[str, str], value: float, cap: float, setting: str) -> None:
    if value > cap:
        raise InvalidRequestError(loc, f"must be at most {cap:g} (the server's {setting})")
