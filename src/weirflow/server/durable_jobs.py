"""``StoreService``: the durable job operations behind ``/api/store`` (``routes/store.py``).

The same operations as ``weirflow jobs`` over the server's store (``--store`` /
``WEIRFLOW_STORE``), opened in the app's lifespan. Jobs are submitted for the
server's flows (checked here: the flow and its slots); workers (``weirflow worker``)
run them. Errors: an unknown job is ``NotFoundError``; a flow, slot or item the
job cannot have is ``InvalidRequestError``; a job in the wrong state for a retry or
a cancel is ``ConflictError`` with the store's rule; the store refusing a write for what it
was asked to hold (``StoreRefusedError``: PostgreSQL's data and integrity errors, e.g. a
constraint of the database's own) is ``StoreRefusedAnswerError`` (``422``: the same request fails
again); the store failing otherwise is ``UnavailableError`` (``503``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..durable.models import (
    DEFAULT_BACKOFF,
    EventRecord,
    JobInfo,
    JobRecord,
    JobSpec,
    StepRecord,
    unstorable,
)
from ..durable.schedules import Schedule
from ..durable.store import Store, open_store
from ..errors import JobError, ScheduleError, StoreError, StoreRefusedError, UnstorableError
from ..flow.graph import Flow
from ..flow.policy import Backoff
from .errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    StoreRefusedAnswerError,
    UnavailableError,
)
from .jsonsafe import jsonable
from .store_models import AddSchedule, SubmitStoreJob, SubmitStoreJobs

if TYPE_CHECKING:
    from ..cluster.dispatch import Dispatcher

T = TypeVar("T")


class StoreService:
    """The server's durable store and the flows jobs may be submitted for."""

    def __init__(
        self, store: Store, flows: Mapping[str, Flow], *, dispatcher: Dispatcher | None = None
    ) -> None:
        self.store = store
        self.flows = flows
        self.dispatcher = dispatcher

    @classmethod
    @asynccontextmanager
    async def opened(
        cls, url: str, flows: Mapping[str, Flow], *, dispatcher: Dispatcher | None = None
    ) -> AsyncIterator[StoreService]:
        """The service over the store at ``url``, open for the block (closed after); with a
        ``dispatcher`` (``--registry``), jobs submitted with a ``pool`` go to its nodes."""
        store = open_store(url)
        await store.open()
        try:
            yield cls(store, flows, dispatcher=dispatcher)
        finally:
            await store.close()

    # -- submitting ---------------------------------------------------------------------

    async def submit(self, body: SubmitStoreJob) -> tuple[JobInfo, bool]:
        """Queue a job (assigned to a node of ``body.pool`` with a registry); returns it and
        whether this call created it (``False``: an earlier submit with the same
        idempotency key did)."""
        spec = self._spec(body, ["body"])
        place = self._place(body, ["body"])
        if place is None:
            job_id, created = await self._call(self.store.submit_once, spec)
        else:
            assert self.dispatcher is not None
            job_id, created = await self._call(
                self.dispatcher.submit, self.store, spec, pool=place[0], labels=place[1]
            )
        record = await self._record(job_id)
        return JobInfo.of(record, await self._call(self.store.steps, job_id)), created

    async def submit_many(self, body: SubmitStoreJobs) -> list[tuple[str, bool]]:
        """Queue every job of the batch in one transaction, or none (the first bad one is a
        ``422`` naming it: ``body.jobs.3.flow``); ``(id, created)`` in order. Jobs with a
        ``pool`` are assigned to its nodes (``Dispatcher.submit_many``)."""
        specs = [self._spec(job, ["body", "jobs", n]) for n, job in enumerate(body.jobs)]
        places = [self._place(job, ["body", "jobs", n]) for n, job in enumerate(body.jobs)]
        if all(place is None for place in places):
            return await self._call(self.store.submit_many, specs)
        assert self.dispatcher is not None
        return await self._call(self.dispatcher.submit_many, self.store, specs, places)

    def _place(self, body: SubmitStoreJob, loc: list[str | int]) -> tuple[str, dict[str, str]] | None:
        """Where ``body`` asks its job to go, ``(pool, labels)``, or ``None`` (no pool)."""
        if body.pool is None:
            if body.labels:
                raise InvalidRequestError(
                    [*loc, "labels"], "labels pick among the nodes of a pool: give pool too"
                )
            return None
        if self.dispatcher is None:
            raise InvalidRequestError(
                [*loc, "pool"],
                "this server has no node registry to dispatch jobs to: start it with --registry redis://host:port/db",
            )
        return body.pool, dict(body.labels or {})

    def _spec(self, body: SubmitStoreJob, loc: list[str | int]) -> JobSpec:
        """The job ``body`` asks for (at ``loc`` in the request), checked against the flows."""
        flow = self.flows.get(body.flow)
        if flow is None:
            known = ", ".join(sorted(self.flows)) or "none"
            raise InvalidRequestError([*loc, "flow"], f"no flow named {body.flow!r} (flows: {known})")
        slots = set(flow.slot_paths())
        for slot in body.inputs:
            if slot not in slots:  # named by repr: the key may not even be valid Unicode
                raise InvalidRequestError(
                    [*loc, "inputs"],
                    f"flow {flow.name!r} has no slot {slot!r} (slots: {', '.join(sorted(slots))})",
                )
        b = body.backoff
        backoff = Backoff(b.initial_s, b.factor, b.max_s, b.jitter) if b is not None else DEFAULT_BACKOFF
        # (a job with a pool goes to the pool's queue unless the body names one)
        queue = body.pool if body.pool is not None and "queue" not in body.model_fields_set else body.queue
        return JobSpec(
            flow=flow.name,
            inputs=dict(body.inputs),
            queue=queue,
            max_attempts=body.attempts,
            backoff=backoff,
            delay_s=body.delay_s,
            priority=body.priority,
            idempotency_key=body.idempotency_key,
            timeout_s=body.timeout_s,
        )

    # -- reading ------------------------------------------------------------------------

    async def job(self, job_id: str) -> JobInfo:
        """``weirflow jobs show``: the job with its steps."""
        record = await self._record(job_id)
        return JobInfo.of(record, await self._call(self.store.steps, job_id))

    async def steps(self, job_id: str) -> list[StepRecord]:
        await self._record(job_id)
        return await self._call(self.store.steps, job_id)

    async def events(self, job_id: str, kind: str | None, since: float | None) -> list[EventRecord]:
        await self._record(job_id)
        return await self._call(self.store.events, job_id=job_id, kind=kind, since=since)

    async def list_jobs(
        self, queue: str | None, status: str | None, flow: str | None, limit: int, offset: int
    ) -> tuple[list[JobRecord], bool]:
        """Newest first: one page, and whether more jobs match after it."""
        rows = await self._call(
            self.store.list_jobs, queue=queue, status=status, flow=flow, limit=limit + 1, offset=offset
        )
        return rows[:limit], len(rows) > limit

    # -- changing -----------------------------------------------------------------------

    async def retry(self, job_id: str, from_start: bool) -> JobInfo:
        """Requeue a failed, cancelled or stalled job (``409`` otherwise: the store's rule)."""
        return await self._change(job_id, lambda: self.store.retry(job_id, from_start=from_start))

    async def cancel(self, job_id: str) -> JobInfo:
        """Cancel a queued or running job (``409`` otherwise); a running job's worker stops it
        at its next heartbeat."""
        return await self._change(job_id, lambda: self.store.cancel(job_id))

    async def _change(self, job_id: str, change: Callable[[], Awaitable[JobRecord]]) -> JobInfo:
        """The job as ``change`` left it (a worker may claim it a moment later), with its steps."""
        await self._record(job_id)
        try:
            record = await self._call(change)
        except JobError as e:  # the job's state does not allow it, or it was deleted meanwhile
            await self._record(job_id)
            raise ConflictError(str(e)) from None
        return JobInfo.of(record, await self._call(self.store.steps, job_id))

    # -- paused queues ------------------------------------------------------------------

    async def paused_queues(self) -> list[str]:
        return await self._call(self.store.paused_queues)

    async def pause_queue(self, queue: str) -> bool:
        return await self._call(self.store.pause_queue, queue)

    async def resume_queue(self, queue: str) -> bool:
        return await self._call(self.store.resume_queue, queue)

    # -- schedules ----------------------------------------------------------------------

    async def schedules(self, queue: str | None) -> list[Schedule]:
        return await self._call(self.store.list_schedules, queue=queue)

    async def add_schedule(self, body: AddSchedule) -> Schedule:
        """Create or replace a schedule of one of the served flows (``422`` for a flow, slot,
        item, cron expression or time zone it cannot have)."""
        flow = self.flows.get(body.flow)
        if flow is None:
            known = ", ".join(sorted(self.flows)) or "none"
            raise InvalidRequestError(["body", "flow"], f"no flow named {body.flow!r} (flows: {known})")
        slots = set(flow.slot_paths())
        for slot in body.inputs:
            if slot not in slots:
                raise InvalidRequestError(
                    ["body", "inputs"],
                    f"flow {flow.name!r} has no slot {slot!r} (slots: {', '.join(sorted(slots))})",
                )
        b = body.backoff
        backoff = Backoff(b.initial_s, b.factor, b.max_s, b.jitter) if b is not None else DEFAULT_BACKOFF
        try:
            schedule = Schedule(
                name=body.name,
                flow=flow.name,
                inputs=dict(body.inputs),
                queue=body.queue,
                cron=body.cron,
                every_s=body.every_s,
                tz=body.tz,
                catchup=body.catchup,
                misfire_grace_s=body.misfire_grace_s,
                max_attempts=body.attempts,
                backoff=backoff,
                priority=body.priority,
                timeout_s=body.timeout_s,
            )
        except ScheduleError as e:
            raise InvalidRequestError(["body", e.field] if e.field else ["body"], str(e)) from None
        except UnstorableError as e:  # (the body's items were checked: this is not expected)
            raise InvalidRequestError(["body", "inputs"], str(e)) from None
        return await self._call(self.store.add_schedule, schedule)

    async def remove_schedule(self, name: str) -> None:
        """``404`` when there is no schedule of that name."""
        if not await self._call(self.store.remove_schedule, name):
            raise NotFoundError(f"no schedule {name!r} in the store")

    # -- plumbing -----------------------------------------------------------------------

    async def _record(self, job_id: str) -> JobRecord:
        record = await self._call(self.store.get, job_id) if unstorable(job_id) is None else None
        if record is None:
            raise NotFoundError(f"no job {job_id!r} in the store")
        return record

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except StoreRefusedError as e:  # (first: it is a StoreError) the request's fault, not the store's
            raise StoreRefusedAnswerError(f"the store refused the write: {e}") from e
        except StoreError as e:
            raise UnavailableError(f"the store failed: {e}") from None


def record_view(record: JobRecord) -> dict[str, Any]:
    """A job as ``weirflow jobs list --json`` prints it; inputs and outputs through ``jsonable``
    (a worker's outputs may nest deeper than a response can)."""
    view = record.to_dict()
    view["inputs"], view["outputs"] = jsonable(record.inputs), jsonable(record.outputs)
    return view


def info_view(info: JobInfo) -> dict[str, Any]:
    """A job as ``weirflow jobs show --json`` prints it; outputs and dead letters through
    ``jsonable``, like ``record_view``."""
    view = info.to_dict()
    view["outputs"], view["dead_letters"] = jsonable(info.outputs), jsonable(info.dead_letters)
    return view


def check_store(url: str) -> None:
    """Open and close the store at ``url`` once (applying its migrations): ``StoreError`` or
    ``OSError`` if it cannot be opened. ``weirflow serve`` calls it before starting."""

    async def check() -> None:
        store = open_store(url)
        await store.open()
        await store.close()

    asyncio.run(check())
