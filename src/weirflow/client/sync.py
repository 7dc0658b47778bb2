"""``Client``: the HTTP API from ordinary (blocking) code, on httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx
from httpx_sse import connect_sse

from ..errors import JobTimeoutError, RequestError
from . import api
from . import pipelines as pipeline_calls
from .api import (
    BatchCreated,
    BreakpointInfo,
    DeadLetterPage,
    DebugView,
    FlowGraph,
    FlowSummary,
    JobInfo,
    JobPage,
    JobQueues,
    JobResultInfo,
    Location,
    ResumedJob,
    RoutineState,
    StoreEvent,
    StoreJob,
    StoreJobIds,
    StoreJobPage,
    StoreStep,
)
from .calls import (
    Call,
    Event,
    Inputs,
    answer,
    error_for,
)
from .pipelines import PipelineDeadLetters, PipelineOut, PipelineResults
from .reconnect import EVENT_READ_TIMEOUT_S, EVENT_RECONNECTS, Reconnects

T = TypeVar("T")
WAIT_CHUNK_S = 25.0  # under the server's default max_wait_s (30)
SEND_TIMEOUT_S = 5.0  # the server's default timeout_s of /input


def headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """The weirflow HTTP API. ``Client("http://127.0.0.1:8000", api_key="...")``; use it as a
    context manager or call ``close()``. Errors are the exceptions the same calls raise in
    process (``wf.InputClosedError``, ``wf.SlotFullError``...), each also a
    ``wf.RequestError`` with ``status`` and ``detail``."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._wait_chunk_s = WAIT_CHUNK_S  # lowered to the server's max_wait_s if it is less
        self._http = httpx.Client(
            base_url=self.url, headers=headers(api_key), timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call[T], *, timeout_s: float | None = None) -> T:
        """Make one call (the methods below are each one ``Call``)."""
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        try:
            r = self._http.request(call.method, call.path, params=call.params, json=call.json, **extra)
        except httpx.HTTPError as e:
            raise RequestError(f"cannot reach {self.url}: {e}") from None
        return answer(call, r.status_code, r.text, r.json)

    # -- flows
    def flows(self) -> list[FlowSummary]:
        return self.call(api.flows())

    def flow(self, name: str) -> FlowGraph:
        return self.call(api.flow(name))

    # -- jobs
    def start(self, flow: str, inputs: Inputs | None = None, *, keep_open: bool = False) -> JobInfo:
        return self.call(api.start(flow, inputs, keep_open))

    def job(self, job_id: str) -> JobInfo:
        return self.call(api.job(job_id))

    def jobs(
        self, *, flow: str | None = None, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> JobPage:
        return self.call(api.jobs(flow, status, limit, offset))

    def send(self, job_id: str, slot: str, *items: Any, timeout_s: float | None = None) -> int:
        """Queue ``items`` into ``slot``, waiting up to ``timeout_s`` while it is full (by
        default the server's: 5 s, or its ``max_send_timeout_s`` if less);
        ``SlotFullError`` (with ``accepted``) if it stayed full."""
        waits_s = SEND_TIMEOUT_S if timeout_s is None else timeout_s
        return self.call(api.send(job_id, slot, list(items), timeout_s), timeout_s=waits_s + 30)

    def close_input(self, job_id: str) -> JobInfo:
        return self.call(api.close(job_id))

    def pause(self, job_id: str, *, reason: str = "manual") -> JobInfo:
        return self.call(api.pause(job_id, reason))

    def resume(self, job_id: str) -> ResumedJob:
        return self.call(api.resume(job_id))

    def cancel(self, job_id: str) -> JobInfo:
        return self.call(api.cancel(job_id))

    def result(self, job_id: str) -> JobResultInfo:
        """The finished job's result; ``JobError`` (409) while it runs."""
        return self.call(api.result(job_id, 0))

    def wait(self, job_id: str, *, timeout_s: float = 60.0) -> JobResultInfo:
        """The result once the job finishes (long polls); ``JobTimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            chunk = max(0.0, min(deadline - time.monotonic(), self._wait_chunk_s))
            try:
                return self.call(api.result(job_id, chunk), timeout_s=chunk + 30)
            except RequestError as e:
                if api.wait_refused(e):  # a server whose max_wait_s is under the chunk: learn it
                    cap = self.call(api.wait_cap())
                    if cap is None or not 0 < cap < chunk:
                        raise
                    self._wait_chunk_s = cap
                    continue
                if e.status != 409:  # 409: not finished yet
                    raise
                if time.monotonic() >= deadline:
                    raise JobTimeoutError(f"job {job_id} did not finish within {timeout_s}s") from None

    def queues(self, job_id: str) -> JobQueues:
        return self.call(api.queues(job_id))

    def dead_letters(self, job_id: str, *, limit: int = 50, offset: int = 0) -> DeadLetterPage:
        return self.call(api.dead_letters(job_id, limit, offset))

    def events(
        self,
        job_id: str,
        *,
        last_event_id: int = 0,
        reconnect: bool = True,
        max_reconnects: int | None = EVENT_RECONNECTS,
    ) -> Iterator[Event]:
        """The job's events as they happen, until its ``end`` event. A stream that breaks or
        ends before ``end`` is reopened from the last event id seen (``Last-Event-ID``), so
        nothing is missed or repeated, after a backoff that starts at the server's ``retry:``
        and doubles up to 30 s; ``RequestError`` after ``max_reconnects`` attempts in a row
        without an event (``None``: never), or at the first break with ``reconnect=False``.
        Events the server no longer keeps arrive as one ``gap`` event."""
        last = last_event_id
        path = api.job(job_id).path + "/events"
        reconnects = Reconnects(job_id, enabled=reconnect, max_reconnects=max_reconnects)
        while True:
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    path,
                    headers={"Last-Event-ID": str(last)},
                    timeout=httpx.Timeout(self._http.timeout.connect, read=EVENT_READ_TIMEOUT_S),
                ) as source:
                    r = source.response
                    if r.status_code >= 400:
                        r.read()
                        raise error_for(r.status_code, _json_or_text(r))
                    for sse in source.iter_sse():
                        reconnects.server_retry(sse.retry)
                        if not sse.data and not sse.id:
                            continue  # a "retry:" line or a comment
                        event = Event(sse.event, json.loads(sse.data) if sse.data else None, _id(sse.id))
                        if event.id is not None:
                            last = event.id
                        reconnects.got_event()
                        yield event
                        if event.kind == "end":
                            return
                why = "ended before its end event"  # (a proxy's timeout, a server going away)
            except httpx.TransportError as e:
                why = f"broke: {e}"
            time.sleep(reconnects.delay_s(why))

    # -- debugger
    def add_breakpoint(
        self,
        job_id: str,
        kind: str,
        target: str,
        condition: str | None = None,
        *,
        once: bool = False,
        scope: str = "job",
        enabled: bool = True,
    ) -> BreakpointInfo:
        return self.call(api.add_breakpoint(job_id, kind, target, condition, once, scope, enabled))

    def add_breakpoints(self, job_id: str, specs: list[dict[str, Any]]) -> BatchCreated:
        return self.call(api.add_breakpoints(job_id, specs))

    def breakpoints(self, job_id: str) -> list[BreakpointInfo]:
        return self.call(api.breakpoints(job_id))

    def change_breakpoint(self, job_id: str, bp_id: str, **changes: Any) -> BreakpointInfo:
        return self.call(api.change_breakpoint(job_id, bp_id, changes))

    def remove_breakpoint(self, job_id: str, bp_id: str) -> None:
        self.call(api.remove_breakpoint(job_id, bp_id))

    def debug(self, job_id: str, *, slot: str | None = None, limit: int | None = None) -> DebugView:
        return self.call(api.debug(job_id, slot, limit))

    def step(self, job_id: str, *, wait_s: float = 0) -> DebugView:
        return self.call(api.step(job_id, False, wait_s), timeout_s=wait_s + 30)

    def step_into(self, job_id: str, *, wait_s: float = 0) -> DebugView:
        return self.call(api.step(job_id, True, wait_s), timeout_s=wait_s + 30)

    def debug_resume(self, job_id: str) -> ResumedJob:
        return self.call(api.debug_resume(job_id))

    def evaluate(self, job_id: str, expr: str) -> Any:
        return self.call(api.evaluate(job_id, expr))

    def set_item(self, job_id: str, item: Any) -> Location:
        return self.call(api.set_item(job_id, item))

    def drop_item(self, job_id: str, reason: str) -> DebugView:
        return self.call(api.drop_item(job_id, reason))

    def set_state(self, job_id: str, key: str, value: Any, *, routine: str | None = None) -> RoutineState:
        return self.call(api.set_state(job_id, key, value, routine))

    # -- durable jobs
    def submit(
        self,
        flow: str,
        inputs: Inputs | None = None,
        *,
        pool: str | None = None,
        labels: Mapping[str, str] | None = None,
        **options: Any,
    ) -> StoreJob:
        """Submit a durable job (options as ``POST /api/store/jobs``: ``queue``, ``attempts``,
        ``delay_s``, ``priority``, ``idempotency_key``, ``timeout_s``, ``backoff``).
        ``pool`` (and ``labels``): assign it to a node of that pool with room, on a server
        started with ``--registry`` (docs/cluster.md)."""
        return self.call(api.submit(flow, inputs, options, pool=pool, labels=labels))

    def submit_many(
        self,
        jobs: Sequence[tuple[str, Inputs | None]],
        *,
        pool: str | None = None,
        labels: Mapping[str, str] | None = None,
        **options: Any,
    ) -> StoreJobIds:
        """Submit ``(flow, inputs)`` pairs in one transaction (``POST /api/store/jobs/batch``),
        each with the options given (as ``submit``'s, ``pool`` and ``labels`` included):
        ``ids`` and ``created`` in order."""
        return self.call(api.submit_many(jobs, options, pool=pool, labels=labels))

    def store_job(self, job_id: str) -> StoreJob:
        return self.call(api.store_job(job_id))

    def store_jobs(
        self,
        *,
        queue: str | None = None,
        status: str | None = None,
        flow: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> StoreJobPage:
        return self.call(api.store_jobs(queue, status, flow, limit, offset))

    def store_steps(self, job_id: str) -> list[StoreStep]:
        return self.call(api.store_steps(job_id))

    def store_events(self, job_id: str) -> list[StoreEvent]:
        return self.call(api.store_events(job_id))

    def retry(self, job_id: str, *, from_start: bool = False) -> StoreJob:
        return self.call(api.retry(job_id, from_start))

    def cancel_stored(self, job_id: str) -> StoreJob:
        return self.call(api.cancel_stored(job_id))

    # -- pipelines (``weirflow.supervise``) -------------------------------------------------

    def start_pipeline(
        self,
        flow: str,
        inputs: Inputs | None = None,
        *,
        name: str | None = None,
        restart: str = "permanent",
        max_rss_mb: float | None = None,
    ) -> PipelineOut:
        return self.call(pipeline_calls.start(flow, inputs, name, restart, max_rss_mb))

    def pipelines(self) -> list[PipelineOut]:
        return self.call(pipeline_calls.listing())

    def pipeline(self, pipeline_id: str) -> PipelineOut:
        return self.call(pipeline_calls.get(pipeline_id))

    def pause_pipeline(self, pipeline_id: str) -> PipelineOut:
        return self.call(pipeline_calls.pause(pipeline_id))

    def resume_pipeline(self, pipeline_id: str) -> PipelineOut:
        return self.call(pipeline_calls.resume(pipeline_id))

    def send_pipeline(self, pipeline_id: str, slot: str, *items: Any, timeout_s: float = 5.0) -> int:
        call = pipeline_calls.send(pipeline_id, slot, list(items), timeout_s)
        return self.call(call, timeout_s=timeout_s + 10)

    def pipeline_results(
        self,
        pipeline_id: str,
        *,
        max_items: int = 100,
        wait_s: float = 0.0,
        peek: bool = False,
        before: int | None = None,
    ) -> PipelineResults:
        """Consume (an admin key) up to ``max_items`` outputs; ``peek``: only look (any key).
        ``before``: consume only the outputs below that position (``offset`` of a peek plus
        how many of its items were handled); asking again takes nothing more."""
        call = pipeline_calls.results(pipeline_id, max_items, wait_s, peek, before)
        return self.call(call, timeout_s=wait_s + 10)

    def pipeline_dead_letters(self, pipeline_id: str) -> PipelineDeadLetters:
        """Items the pipeline did not process (``Supervisor.dead_letters``), oldest first."""
        return self.call(pipeline_calls.dead_letters(pipeline_id))

    def stop_pipeline(self, pipeline_id: str, *, grace_s: float | None = None) -> PipelineOut:
        return self.call(pipeline_calls.stop(pipeline_id, grace_s), timeout_s=(grace_s or 60) + 10)

    def forget_pipeline(self, pipeline_id: str) -> PipelineOut:
        """Remove a stopped or failed pipeline (``PipelineStateError``, 409, while it runs)."""
        return self.call(pipeline_calls.forget(pipeline_id))


def _id(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


def _json_or_text(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text
