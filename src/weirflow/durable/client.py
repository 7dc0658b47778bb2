"""What ``wf.Engine(store=...)`` delegates to: submitting durable jobs and reading them back.

``DurableClient`` implements the runtime's ``DurableJobs`` protocol: the engine calls it
and never imports this package.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import JobError, JobTimeoutError
from ..flow.policy import Backoff
from .models import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, DEFAULT_QUEUE, FINISHED, JobInfo, JobSpec
from .schedules import Schedule
from .store import Store, open_store

if TYPE_CHECKING:
    from ..runtime.engine import Engine


class Placer(Protocol):
    """What submits a job to a node of a pool (``weirflow.cluster.Dispatcher``: this
    package does not import the cluster, which sits above it)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(
        self, store: Store, spec: JobSpec, *, pool: str, labels: Mapping[str, str] | None = None
    ) -> tuple[str, bool]: ...

    async def submit_many(
        self,
        store: Store,
        specs: Sequence[JobSpec],
        places: Sequence[tuple[str, Mapping[str, str] | None] | None],
    ) -> list[tuple[str, bool]]: ...


class DurableClient:
    """The engine's store, opened on first use (or at ``async with engine``); with a
    ``placer``, submits with ``pool=`` go to nodes."""

    def __init__(self, engine: Engine, store: Store | str, *, placer: Placer | None = None) -> None:
        self.engine = engine
        self.store: Store = open_store(store) if isinstance(store, str) else store
        self.placer = placer
        self._opened = False

    async def open(self) -> Store:
        if not self._opened:
            await self.store.open()
            if self.placer is not None:
                await self.placer.open()
            self._opened = True
        return self.store

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            try:
                if self.placer is not None:
                    await self.placer.close()
            finally:
                await self.store.close()

    async def submit(
        self,
        flow: str,
        inputs: dict[str, Any] | None,
        *,
        pool: str | None = None,
        labels: Mapping[str, str] | None = None,
        queue: str | None = None,
        **options: Any,
    ) -> str:
        if not self._dispatched(pool, labels):
            spec = self.spec(flow, inputs, queue=queue or DEFAULT_QUEUE, **options)
            store = await self.open()
            return await store.submit(spec)
        assert pool is not None and self.placer is not None
        spec = self.spec(flow, inputs, queue=queue or pool, **options)
        store = await self.open()
        job_id, _ = await self.placer.submit(store, spec, pool=pool, labels=dict(labels or {}))
        return job_id

    def _dispatched(self, pool: str | None, labels: Mapping[str, str] | None) -> bool:
        """Whether a submit with ``pool`` goes through the placer (``JobError`` for a bad
        ``pool``, ``labels`` without one, or a pool without a registry)."""
        if pool is None:
            if labels:
                raise JobError("labels= picks among the nodes of a pool: give pool= too")
            return False
        if not isinstance(pool, str) or not pool:
            raise JobError("pool must be a non-empty string")
        if self.placer is None:
            raise JobError("pool= needs the cluster's registry: wf.Engine(store=..., registry='redis://...')")
        return True

    async def submit_many(
        self,
        jobs: Iterable[JobSpec | tuple[str, dict[str, Any] | None]],
        *,
        pool: str | None = None,
        labels: Mapping[str, str] | None = None,
        queue: str | None = None,
        **options: Any,
    ) -> list[str]:
        """Each of ``jobs`` checked (its flow registered, its slots the flow's), then all
        submitted in one transaction; ids in order. ``options`` are ``submit``'s, for the
        ``(flow, inputs)`` pairs; a ``JobSpec`` carries its own. With ``pool`` every job is
        assigned to a node of it as ``submit`` does (the pairs' queue is then ``pool``
        unless ``queue`` is given)."""
        dispatched = self._dispatched(pool, labels)
        default_queue = queue or (pool if dispatched and pool else DEFAULT_QUEUE)
        specs = [
            self.spec(job.flow, job.inputs, spec=job)
            if isinstance(job, JobSpec)
            else self.spec(*job, queue=default_queue, **options)
            for job in jobs
        ]
        store = await self.open()
        if not dispatched:
            return [job_id for job_id, _ in await store.submit_many(specs)]
        assert pool is not None and self.placer is not None
        place = (pool, dict(labels or {}))
        return [job_id for job_id, _ in await self.placer.submit_many(store, specs, [place] * len(specs))]

    def spec(
        self,
        flow: str,
        inputs: dict[str, Any] | None,
        *,
        spec: JobSpec | None = None,
        queue: str = DEFAULT_QUEUE,
        attempts: int = 3,
        backoff: Backoff | None = None,
        delay_s: float = 0.0,
        priority: int = 0,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
    ) -> JobSpec:
        """A job of the registered flow ``flow`` (``JobError`` for an unknown flow or slot;
        ``UnstorableError`` for inputs a store cannot hold); ``spec`` as it is once checked."""
        graph = self.engine.flow(flow)
        inputs = dict(inputs or {})
        slots = set(graph.slot_paths())
        unknown = sorted(set(inputs) - slots)
        if unknown:
            raise JobError(f"flow {flow!r} has no slot {unknown[0]!r} (slots: {', '.join(sorted(slots))})")
        if spec is not None:
            return spec
        return JobSpec(
            flow=flow,
            inputs=inputs,
            queue=queue,
            max_attempts=attempts,
            backoff=backoff or DEFAULT_BACKOFF,
            delay_s=delay_s,
            priority=priority,
            idempotency_key=idempotency_key,
            timeout_s=timeout_s,
        )

    async def get_job(self, job_id: str) -> JobInfo:
        store = await self.open()
        record = await store.get(job_id)
        if record is None:
            raise JobError(f"no job {job_id!r} in the store")
        return JobInfo.of(record, await store.steps(job_id))

    async def wait_job(self, job_id: str, timeout_s: float | None) -> JobInfo:
        store = await self.open()
        record = await store.wait_finished(job_id, timeout_s)
        if record is None:
            raise JobError(f"no job {job_id!r} in the store")
        if record.status not in FINISHED:
            raise JobTimeoutError(f"job {job_id} is still {record.status} after {timeout_s:g}s")
        return JobInfo.of(record, await store.steps(job_id))

    async def schedule(self, name: str, flow: str, inputs: dict[str, Any] | None, **options: Any) -> Schedule:
        """``options`` are ``Engine.schedule``'s (``cron``, ``every_s``, ``tz``, ``queue``,
        ``catchup``, ``misfire_grace_s``, ``attempts``, ``backoff``, ``priority``,
        ``timeout_s``)."""
        graph = self.engine.flow(flow)
        inputs = dict(inputs or {})
        slots = set(graph.slot_paths())
        unknown = sorted(set(inputs) - slots)
        if unknown:
            raise JobError(f"flow {flow!r} has no slot {unknown[0]!r} (slots: {', '.join(sorted(slots))})")
        attempts = options.pop("attempts", DEFAULT_ATTEMPTS)
        backoff = options.pop("backoff", None) or DEFAULT_BACKOFF
        schedule = Schedule(
            name=name, flow=flow, inputs=inputs, max_attempts=attempts, backoff=backoff, **options
        )
        store = await self.open()
        return await store.add_schedule(schedule)

    async def unschedule(self, name: str) -> bool:
        store = await self.open()
        return await store.remove_schedule(name)

    async def schedules(self, queue: str | None) -> list[Schedule]:
        store = await self.open()
        return await store.list_schedules(queue=queue)
