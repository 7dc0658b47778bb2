"""Running one claimed job in a ``Worker``: resume it from its journal (reconciling its
step rows after a takeover), run it in the engine, and report how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Sequence
from typing import Any, cast

import orjson

from ..errors import JobError, JobTimeoutError, LeaseLostError
from ..flow.graph import Flow
from ..runtime.job import Job
from ..runtime.plan import FlowPlan, plan_of
from ..runtime.replay import Restore, restore_from
from ..runtime.results import JobResult, JobStatus, format_traceback
from .models import JobRecord, storable_letters
from .steps import reconciled
from .worker_core import first_done, log
from .worker_lane import LaneJob, LanePlan, lane_plan
from .worker_leases import Leases
from .worker_reports import Reporting

_NO_ITEM = object()


class Running(Reporting, Leases):
    #: run simple jobs (a one-routine flow of one async ``each`` handler, one input item, no
    #: replay) without a runtime ``Job`` (``worker_lane``): the same journal, step rows,
    #: outcome, dead letters, timeout and cancellation; ``False`` builds a ``Job`` for each
    simple_lane = True
    lane_runs = 0  # jobs this worker ran in the lane
    _lanes: dict[str, tuple[FlowPlan, LanePlan | None]] | None = None

    def _lane_for(self, flow: Flow, record: JobRecord) -> tuple[LanePlan, Any] | None:
        """The lane's plan and the job's one input item, if the lane may run it."""
        engine = self.engine
        if (
            not self.simple_lane
            or not self._owns_engine
            or engine.hooks
            or engine.closed
            or self._engine_journal is not None
            or engine.journal is None
            or len(record.inputs) != 1
        ):
            return None
        plan = plan_of(flow)  # (validated when new or changed, as ``Engine.start`` does)
        lanes = self._lanes
        if lanes is None:
            lanes = self._lanes = {}
        cached = lanes.get(flow.name)
        if cached is None or cached[0] is not plan:
            cached = lanes[flow.name] = (plan, lane_plan(flow, plan))
        lane = cached[1]
        if lane is None:
            return None
        items = record.inputs.get(lane.path, _NO_ITEM)
        if items is _NO_ITEM:
            return None
        if isinstance(items, list | tuple):
            if len(items) != 1:
                return None
            return lane, items[0]
        return lane, items

    async def _run_lane(self, record: JobRecord, lane: LanePlan, item: Any) -> JobResult | None:
        """Run the job in the lane (``worker_lane``); ``None`` when its timeout cancelled it."""
        self.lane_runs += 1
        lane_job = LaneJob(self.engine, lane, record.id, item)

        def started(job: LaneJob) -> bool:
            self.running[record.id] = cast(Job, job)  # (the worker reads what both have)
            return record.id in self._lost  # cancelled in the store before it started here

        result = await lane_job.run(record.timeout_s, started)
        return None if lane_job.timed_out else result

    async def _run_job(self, record: JobRecord) -> None:
        job: Job | None = None
        if self.durable is not None:  # (from here on: an earlier run's records are dropped)
            self.durable.begin(record.id, record.token)
        try:
            flow = self.engine.flow(record.flow)
            if self.journal is not None:
                self.journal.begin(record.id, record.runs)
            restore = await self._restore(record, flow)
            if self.cut_short:  # the shutdown gave it back while it was being restored
                await self._released.wait()
                self._reported([])
                return
            simple = self._lane_for(flow, record) if restore is None else None
            result: JobResult | None
            waited = False  # for handler calls that outlived the job's end
            if simple is not None:
                result = await self._run_lane(record, *simple)
            else:
                job = await self.engine.start(flow, record.inputs, job_id=record.id, restore=restore)
                self.running[record.id] = job
                if record.id in self._lost:  # cancelled in the store before it started here
                    await job.cancel()
                try:
                    result = await job.wait(record.timeout_s)
                except JobTimeoutError:
                    await job.cancel(reason="job_timeout", error=f"timed out after {record.timeout_s:g}s")
                    result = None
                if job.lingering and record.id in self._lost:
                    await self._lost_calls_end(record, job)
                    return
                if job.lingering:  # the attempt is not over while its handler calls run
                    await self._calls_end(record.id, job)
                    waited = True
            if record.id in self._lost:
                self._lost.discard(record.id)
                self._reported([])
                return
            if waited and self.cut_short and (result is None or result.status is JobStatus.CANCELLED):
                await self._released.wait()  # given back by the shutdown meanwhile
                self._reported([])
                return
            if result is None:
                self._report_failure(record.id, f"timed out after {record.timeout_s:g}s; job cancelled")
            elif result.status is JobStatus.COMPLETED:
                self._done.append((record.id, record.token, _json_safe(result.outputs), _letters(result)))
                self._reporting.add(record.id)
                self._report_wake.set()
            elif result.status is JobStatus.CANCELLED and self._stopping.is_set():
                await self._released.wait()  # cut short by the shutdown, which releases it
                self._reported([])
            else:
                error = result.error or f"job {result.status.value}"
                self._report_failure(record.id, error, detail=result.traceback, dead_letters=_letters(result))
        except LeaseLostError as e:
            self._lease_lost(record.id, str(e))
            self._lost.discard(record.id)
            self._reported([])
        except JobError as e:  # unknown flow, bad inputs: retrying cannot help
            self._report_failure(record.id, str(e), retry=False)
        except Exception as e:  # noqa: BLE001 - any other failure to run is a failed attempt
            self._report_failure(record.id, f"{type(e).__name__}: {e}", detail=format_traceback(e))
        finally:
            if self._tokens.get(record.id, record.token) == record.token:  # (not claimed again)
                self.running.pop(record.id, None)
                if record.id not in self._reporting:
                    self._forget(record.id)
            self._slot_free.set()
            if job is not None and job.finished and self.engine.jobs.get(job.id) is job:
                with contextlib.suppress(JobError):
                    self.engine.forget(job.id)

    async def _calls_end(self, job_id: str, job: Job) -> None:
        """Wait until the handler calls of ``job`` that outlived its end (a timeout, a lost
        lease, a cancel) have returned or were killed, before its outcome is reported and its
        slot freed: a plain ``def`` call's thread cannot be stopped, and the next attempt
        must not run beside it. The lease stays held (renewed) meanwhile; a shutdown that
        gives the job back ends the wait (its grace path ends the process or waits itself)."""
        started = time.monotonic()
        calls = job.lingering
        await first_done(job.wait_calls_ended(), self._released.wait())
        log.warning(
            "calls_still_running",
            worker=self.worker_id,
            job=job_id,
            calls=calls,
            waited_s=round(time.monotonic() - started, 3),
        )

    async def _lost_calls_end(self, record: JobRecord, job: Job) -> None:
        """A lost job whose handler calls still run: let go of it at once (it is not ours:
        a claim of it, by any worker, is a new run), but keep its slot busy until those
        calls ended, so that this worker does not run more at once than it may (and, with
        one slot, does not take the job again while its old call runs). A claim of it
        here meanwhile (in another slot) is a new run that begins once they ended
        (``Worker._run_again``: ``_lingering`` is what it waits on)."""
        job_id, token = record.id, record.token
        lingering = self._lingering.setdefault(job_id, set())
        lingering.add(token)
        self._lost.discard(job_id)
        self._reported([])
        self.running.pop(job_id, None)
        self._forget(job_id)
        with contextlib.suppress(JobError):
            self.engine.forget(job.id)
        # (never a job id: ids have no space; one per run: two runs' calls may linger)
        slot = f"{job_id} (calls of run {token} still running)"
        self.running[slot] = None
        try:
            await self._calls_end(job_id, job)
        finally:
            self.running.pop(slot, None)
            lingering.discard(token)
            if not lingering and self._lingering.get(job_id) is lingering:
                del self._lingering[job_id]
            gone = self._gone.get(job_id)
            if gone is not None:  # a new run of it here waits for this
                gone.set()

    async def _restore(self, record: JobRecord, flow: Flow) -> Restore | None:
        """Where a job taken over (after a crash, a stall or a retry) resumes: its journal's
        replay — completed steps are not run again — or nothing with ``from_start``."""
        if self.durable is None:
            return None
        if record.from_start:
            clear = functools.partial(self.store.clear_journal, token=record.token)
            await self._retrying("journal", clear, record.id)
            return None
        if record.runs <= 1:  # a first run has no journal yet: no read
            return None
        # decoded (``records_of``) and replayed in a thread: a long journal (100,000 records)
        # takes seconds, and the loop must keep renewing this worker's other leases meanwhile
        records = await self._retrying("journal", self.durable.records_of, record.id)
        if self.journal is not None:
            await self._reconcile_steps(record, records)
        if not records:
            return None
        restore = await asyncio.to_thread(restore_from, records, flow)
        log.info("job_resumed", worker=self.worker_id, job=record.id, steps_done=restore.steps_done)
        return restore

    async def _reconcile_steps(self, record: JobRecord, records: Sequence[Any]) -> None:
        """Make a taken-over job's step rows say what its journal committed, before it resumes."""
        rows = await self._retrying("journal", self.store.steps, record.id)
        now = self.store.clock()
        fixed = await asyncio.to_thread(reconciled, record.id, records, rows, token=record.token, now=now)
        if fixed:
            refused = await self._retrying("journal", self.store.record_steps, fixed)
            if refused:
                raise LeaseLostError(refused, "taken over while resuming")


def _letters(result: JobResult) -> list[dict[str, Any]]:
    """The job's dead letters as stored: JSON values, items that are not as their ``repr``,
    errors as every store can hold them (``storable_letters``)."""
    if not result.dead_letters:
        return []
    letters: list[dict[str, Any]] = json_safe([d.to_dict() for d in result.dead_letters])
    return storable_letters(letters) or []


def _json_safe(outputs: dict[str, list[Any]]) -> dict[str, Any]:
    """Outputs as stored: JSON values, anything else as its ``repr``."""
    result: dict[str, Any] = json_safe(outputs)
    return result


#: orjson writes these natively where the json module would call ``default=repr``
_PLAIN = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_safe(value: Any) -> Any:
    """``value`` as JSON values: a copy through JSON, anything JSON cannot hold as its
    ``repr`` (``json.dumps(value, default=repr)`` read back).

    The commonest values (plain dicts with string keys, lists, strings, numbers, booleans,
    ``None``) take orjson, in C: its copy is used when it equals ``value`` and orjson
    raised nothing, which is exactly when the json module would give the same copy (a
    tuple, a UUID, an enum, NaN, a subclass, a non-string key or an integer past 64 bits
    either raise or compare unequal, and go the json module's way). Per job the json
    module's round trip was a few per cent of a worker's CPU."""
    try:
        copy = orjson.loads(orjson.dumps(value, option=_PLAIN))
    except (orjson.JSONEncodeError, TypeError):
        pass
    else:
        if copy == value:
            return copy
    return json.loads(json.dumps(value, default=repr))
