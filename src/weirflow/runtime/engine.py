"""``Engine``: owns the event loop's jobs, the thread pool for plain ``def`` handlers,
hooks and journal. Nothing in weirflow is process-wide: pass the engine around."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from ..errors import JobError
from ..flow.graph import Flow
from .hooks import Hooks
from .job import Job
from .journal import Journal, is_active


class Engine:
    """Runs jobs on the current asyncio loop.

    ``hooks`` observe (and may hold) items on every job's data path; ``journal``
    receives each job's enqueues and completed steps; ``max_threads`` sizes the
    pool that runs plain ``def`` handlers. Use as ``async with wf.Engine() as e``.
    """

    def __init__(
        self,
        *,
        hooks: Iterable[Hooks] = (),
        journal: Journal | None = None,
        max_threads: int | None = None,
    ) -> None:
        self.hooks: list[Hooks] = list(hooks)
        for h in self.hooks:
            if not isinstance(h, Hooks):
                raise TypeError(f"hooks must be wf.Hooks instances, not {type(h).__name__}")
        self.journal: Journal | None = journal if is_active(journal) else None
        self.max_threads = max_threads or min(64, (os.cpu_count() or 1) + 8)
        self._pool: ThreadPoolExecutor | None = None
        self.jobs: dict[str, Job] = {}
        self.flows: dict[str, Flow] = {}
        self._closed = False

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_threads, thread_name_prefix="weirflow")
        return self._pool

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def register(self, flow: Flow) -> Flow:
        """Make ``flow`` known by its name (for ``start(name)`` and the interfaces)."""
        flow.validate()
        self.flows[flow.name] = flow
        return flow

    def flow(self, name: str) -> Flow:
        try:
            return self.flows[name]
        except KeyError:
            known = ", ".join(sorted(self.flows)) or "none"
            raise JobError(f"no flow named {name!r} is registered (flows: {known})") from None

    async def start(
        self,
        flow: Flow | str,
        inputs: dict[str, Any] | None = None,
        *,
        keep_open: bool = False,
        job_id: str | None = None,
        hooks: Iterable[Hooks] = (),
    ) -> Job:
        """Start a job of ``flow`` (a ``Flow`` or a registered name).

        ``inputs`` maps ``"routine.slot"`` to a list of items (or one item); they are
        fed in the background, waiting for room as needed. With ``keep_open`` the
        job also accepts ``send()`` until ``close_input()``.
        """
        if self._closed:
            raise JobError("engine is closed")
        if isinstance(flow, str):
            flow = self.flow(flow)
        flow.validate()
        if job_id is not None and job_id in self.jobs:
            raise JobError(f"a job with id {job_id!r} already exists")
        job = Job(self, flow, keep_open=keep_open, job_id=job_id, hooks=hooks)
        self.jobs[job.id] = job
        try:
            await job._start(dict(inputs or {}))
        except BaseException:
            del self.jobs[job.id]
            raise
        return job

    def get(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobError(f"no job {job_id!r}") from None

    def forget(self, job_id: str) -> None:
        """Drop a finished job from ``jobs``."""
        job = self.get(job_id)
        if not job.finished:
            raise JobError(f"job {job_id} is {job.status.value}; cancel it first")
        del self.jobs[job_id]

    async def close(self) -> None:
        """Cancel unfinished jobs (their items are dead-lettered) and stop the thread pool."""
        self._closed = True
        for job in list(self.jobs.values()):
            if not job.finished:
                await job.cancel()
            elif job._closing is not None:
                await job._closing
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
