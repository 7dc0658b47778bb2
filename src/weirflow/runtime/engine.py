"""``Engine``: owns the event loop's jobs, the thread pool for plain ``def`` handlers,
hooks and journal. Nothing in weirflow is process-wide: pass the engine around."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ..errors import JobError
from ..flow.graph import Flow
from .dead_letters import DEFAULT_MAX_DEAD_LETTERS
from .hooks import Hooks, HookSet
from .job import Job
from .journal import Journal, is_active
from .plan import plan_of

if TYPE_CHECKING:
    from ..flow.policy import Backoff
    from .durability import DurableJobs
from .process import ProcessPool
from .replay import Restore
from .threads import ThreadCrew


class Engine:
    """Runs jobs on the current asyncio loop.

    ``hooks`` observe (and may hold) items on every job's data path; ``journal``
    receives each job's enqueues and completed steps; ``max_threads`` sizes the
    pool that runs plain ``def`` code outside routine workers (``on_end``, batch
    handlers); each plain ``def`` routine gets up to ``concurrency`` threads of its
    own besides. ``max_processes`` (default: the number of CPUs) caps the child
    processes of ``executor = "process"`` routines. ``max_dead_letters`` is how many
    dead letters each job keeps in memory (``JobResult.dead_letters``); every one is
    still counted and reported to hooks and the journal. A store of durable jobs
    (``use_durable``: ``wf.Engine(store=URL)`` does it) enables ``submit``, ``get_job``
    and ``wait_job``; it is opened at ``async with`` (or first use) and closed by
    ``close()``. Use as ``async with wf.Engine() as e``.
    """

    def __init__(
        self,
        *,
        hooks: Iterable[Hooks] = (),
        journal: Journal | None = None,
        max_threads: int | None = None,
        max_processes: int | None = None,
        max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS,
    ) -> None:
        if max_dead_letters < 0:
            raise JobError(f"max_dead_letters must be >= 0, not {max_dead_letters}")
        self.max_dead_letters = max_dead_letters
        #: exceptions raised by hooks, by (hook class, hook point); see ``Hooks``
        self.hook_errors: dict[tuple[str, str], int] = {}
        self.hooks: list[Hooks] = list(hooks)
        for h in self.hooks:
            if not isinstance(h, Hooks):
                raise TypeError(f"hooks must be wf.Hooks instances, not {type(h).__name__}")
        self._hook_set: tuple[tuple[Hooks, ...], HookSet] | None = None  # (hook_set)
        self.journal: Journal | None = journal if is_active(journal) else None
        self.max_threads = max_threads or min(64, (os.cpu_count() or 1) + 8)
        self._pool: ThreadPoolExecutor | None = None
        self._crew: ThreadCrew | None = None
        self.max_processes = max_processes or os.cpu_count() or 1
        self._processes: ProcessPool | None = None
        self.jobs: dict[str, Job] = {}
        self.flows: dict[str, Flow] = {}
        self._closed = False
        self._durable: DurableJobs | None = None

    def use_durable(self, durable: DurableJobs) -> None:
        """Submit and read durable jobs through ``durable`` (the runtime reaches a store only
        through this protocol; ``weirflow.durable.DurableClient`` implements it)."""
        self._durable = durable

    @property
    def closed(self) -> bool:
        """``close()`` was called: no new jobs start."""
        return self._closed

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_threads, thread_name_prefix="weirflow")
        return self._pool

    @property
    def crew(self) -> ThreadCrew:
        """The threads that routines of plain ``def`` handlers run on (``runtime.threads``)."""
        if self._crew is None:
            self._crew = ThreadCrew()
        return self._crew

    @property
    def processes(self) -> ProcessPool:
        """The child processes that ``executor = "process"`` routines run in (started as
        needed, at most ``max_processes``)."""
        if self._processes is None:
            self._processes = ProcessPool(max_processes=self.max_processes)
        return self._processes

    def close_processes(self) -> None:
        """Kill the child processes of ``executor = "process"`` routines now, with any
        call still running in them (a worker's shutdown does this before giving its jobs
        back, so that no handler runs on beside the next attempt); a later call starts
        new ones."""
        pool, self._processes = self._processes, None
        if pool is not None:
            pool.close()

    async def __aenter__(self) -> Self:
        if self._durable is not None:
            await self._durable.open()
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
        restore: Restore | None = None,
    ) -> Job:
        """Start a job of ``flow`` (a ``Flow`` or a registered name).

        ``inputs`` maps ``"routine.slot"`` to a list of items (or one item); they are
        fed in the background, waiting for room as needed. With ``keep_open`` the
        job also accepts ``send()`` until ``close_input()``. ``restore`` resumes from a
        journal's replay (``weirflow.runtime.replay``): only inputs not yet fed are fed.
        """
        if self._closed:
            raise JobError("engine is closed")
        if isinstance(flow, str):
            flow = self.flow(flow)
        plan = plan_of(flow)  # validated when it is new or changed (``runtime.plan``)
        if job_id is not None and job_id in self.jobs:
            raise JobError(f"a job with id {job_id!r} already exists")
        job = Job(self, flow, keep_open=keep_open, job_id=job_id, hooks=hooks, plan=plan)
        self.jobs[job.id] = job
        try:
            await job.begin(dict(inputs or {}), restore)
        except BaseException:
            del self.jobs[job.id]
            raise
        return job

    def hook_set(self, extra: Iterable[Hooks] = ()) -> HookSet:
        """The hooks of a new job: the engine's (``hooks``, read now), then ``extra``. Jobs
        without hooks of their own share one ``HookSet`` while ``hooks`` stays the same
        (a ``HookSet`` is not changed once made)."""
        extra = tuple(extra)
        if extra:
            return HookSet([*self.hooks, *extra])
        hooks = self.hooks
        cached = self._hook_set
        if cached is None or len(cached[0]) != len(hooks) or not all(map(operator.is_, cached[0], hooks)):
            key = tuple(hooks)
            cached = self._hook_set = (key, HookSet(list(key)))
        return cached[1]

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
        job.release()

    async def close(self) -> None:
        """Cancel unfinished jobs (their items are dead-lettered) and stop the thread pool."""
        self._closed = True
        for job in list(self.jobs.values()):
            if not job.finished:
                await job.cancel()
            else:
                await job.wait_closed()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._crew is not None:
            self._crew.close()
            self._crew = None
        if self._processes is not None:
            self._processes.close()
            self._processes = None
        if self._durable is not None:
            await self._durable.close()

    # -- durable jobs (weirflow.durable) ---------------------------------------------

    def _store_client(self) -> DurableJobs:
        if self._durable is None:
            raise JobError("this engine has no store: use wf.Engine(store='sqlite:///weirflow.db')")
        return self._durable

    @property
    def store(self) -> Any:
        """The durable store (a ``weirflow.durable.Store``; ``None`` without one)."""
        return self._durable.store if self._durable is not None else None

    async def submit(
        self,
        flow: str,
        inputs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        attempts: int = 3,
        backoff: Backoff | None = None,
        delay_s: float = 0.0,
        priority: int = 0,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
        pool: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Queue a durable job of the registered flow ``flow``; returns its id at once.

        A worker (``weirflow worker``) runs it: up to ``attempts`` times with ``backoff``
        between failures, no earlier than ``delay_s`` from now, higher ``priority``
        first, cancelled and failed after ``timeout_s``. A second submit with the same
        ``idempotency_key`` (per queue) returns the first job's id.

        ``pool`` (with ``wf.Engine(registry=URL)``) assigns the job to the least loaded
        node of that pool carrying every one of ``labels`` that has room, validated by
        the store (docs/cluster.md); the queue is then ``pool`` unless ``queue`` is given.
        Without ``pool`` the queue is ``"default"`` unless given.
        """
        return await self._store_client().submit(
            flow,
            inputs,
            pool=pool,
            labels=labels,
            queue=queue,
            attempts=attempts,
            backoff=backoff,
            delay_s=delay_s,
            priority=priority,
            idempotency_key=idempotency_key,
            timeout_s=timeout_s,
        )

    async def submit_many(
        self,
        jobs: Iterable[Any],
        *,
        queue: str | None = None,
        attempts: int = 3,
        backoff: Backoff | None = None,
        delay_s: float = 0.0,
        priority: int = 0,
        timeout_s: float | None = None,
        pool: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Queue many durable jobs in one transaction (PostgreSQL: one statement and one
        ``NOTIFY``); returns their ids in order.

        Each of ``jobs`` is a ``(flow, inputs)`` pair, which gets the options given here
        (as for ``submit``), or a ``JobSpec`` with options of its own (an
        ``idempotency_key`` among them). Every job is checked before any is queued: one
        bad job (an unknown flow or slot, inputs a store cannot hold) raises and queues
        none. A job whose idempotency key (per queue) is held, by an earlier job or an
        earlier one of the list, gets that job's id.

        ``pool`` (and ``labels``) assign every job to a node as ``submit`` does: each job
        is reserved on a node with room, the store checks each node's share of the batch
        against its capacity, and jobs no node has room for are queued unassigned. The
        pairs' queue is ``pool`` unless ``queue`` is given, else ``"default"``.
        """
        return await self._store_client().submit_many(
            jobs,
            pool=pool,
            labels=labels,
            queue=queue,
            attempts=attempts,
            backoff=backoff,
            delay_s=delay_s,
            priority=priority,
            timeout_s=timeout_s,
        )

    async def get_job(self, job_id: str) -> Any:
        """A durable job's status, attempt, error and steps (``JobError`` if unknown)."""
        return await self._store_client().get_job(job_id)

    async def wait_job(self, job_id: str, *, timeout_s: float | None = None) -> Any:
        """Wait until the durable job ``job_id`` is completed, failed or cancelled and return
        its ``JobInfo`` (status, error and its traceback, steps, ``outputs``,
        ``dead_letters``), like BullMQ's ``waitUntilFinished``. It waits on the store's
        notifications (PostgreSQL ``LISTEN``, in-process wake-ups), not by polling.
        ``JobTimeoutError`` after ``timeout_s`` (``None``: no limit), ``JobError`` for an
        unknown id. A failed job is returned, not raised: look at ``info.status``."""
        if timeout_s is not None and not timeout_s >= 0:
            raise JobError("timeout_s must be >= 0")
        return await self._store_client().wait_job(job_id, timeout_s)

    async def schedule(
        self,
        name: str,
        flow: str,
        inputs: dict[str, Any] | None = None,
        *,
        cron: str | None = None,
        every_s: float | None = None,
        tz: str = "UTC",
        queue: str = "default",
        catchup: str = "once",
        misfire_grace_s: float = 5.0,
        attempts: int = 3,
        backoff: Backoff | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
    ) -> Any:
        """Make a job of the registered flow ``flow`` at every tick of ``cron`` (a cron
        expression, in the time zone ``tz``) or of ``every_s`` seconds (at its multiples
        since the epoch); ``attempts``, ``backoff``, ``priority`` and ``timeout_s`` are each
        job's, as for ``submit``. Workers of ``queue`` fire the ticks, one job per tick
        however many run. Ticks missed while no worker ran: only the latest can fire —
        with ``catchup="once"`` however late, with ``"skip"`` only within
        ``misfire_grace_s`` of its time. Scheduling ``name`` again replaces it (keeping its
        next tick if the timing is the same). ``ScheduleError`` for a bad cron expression,
        time zone or timing; returns the stored ``Schedule`` (``next_at``: its next tick)."""
        return await self._store_client().schedule(
            name,
            flow,
            inputs,
            cron=cron,
            every_s=every_s,
            tz=tz,
            queue=queue,
            catchup=catchup,
            misfire_grace_s=misfire_grace_s,
            attempts=attempts,
            backoff=backoff,
            priority=priority,
            timeout_s=timeout_s,
        )

    async def unschedule(self, name: str) -> bool:
        """Remove the schedule ``name`` (its jobs already made stay); ``False`` if unknown."""
        return await self._store_client().unschedule(name)

    async def schedules(self, *, queue: str | None = None) -> list[Any]:
        """The store's schedules (of ``queue``), by name."""
        return await self._store_client().schedules(queue)
