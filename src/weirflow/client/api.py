"""Every call of the HTTP API as a ``Call``: its method, path, body and the model its
answer is read into (the server's own response models, so both sides agree)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ..errors import RequestError
from ..server.debug_models import BatchCreated, BreakpointInfo, DebugView, Location, RoutineState
from ..server.models import (
    DeadLetterPage,
    FlowGraph,
    FlowSummary,
    JobInfo,
    JobPage,
    JobQueues,
    JobResultInfo,
    ResumedJob,
)
from ..server.store_models import StoreEvent, StoreJob, StoreJobIds, StoreJobPage, StoreStep
from .calls import Call, Inputs, field, items, model, models, nothing, query

__all__ = [
    "BatchCreated",
    "BreakpointInfo",
    "DeadLetterPage",
    "DebugView",
    "FlowGraph",
    "FlowSummary",
    "JobInfo",
    "JobPage",
    "JobQueues",
    "JobResultInfo",
    "Location",
    "ResumedJob",
    "RoutineState",
    "StoreEvent",
    "StoreJob",
    "StoreJobIds",
    "StoreJobPage",
    "StoreStep",
]


def _job(job_id: str, rest: str = "") -> str:
    return f"/api/jobs/{quote(job_id, safe='')}{rest}"


def _store(job_id: str, rest: str = "") -> str:
    return f"/api/store/jobs/{quote(job_id, safe='')}{rest}"


# -- flows ----------------------------------------------------------------------------------


def flows() -> Call[list[FlowSummary]]:
    return Call("GET", "/api/flows", models(FlowSummary))


def flow(name: str) -> Call[FlowGraph]:
    return Call("GET", f"/api/flows/{quote(name, safe='')}", model(FlowGraph))


# -- jobs -----------------------------------------------------------------------------------


def start(flow: str, inputs: Inputs | None, keep_open: bool) -> Call[JobInfo]:
    body = {"flow": flow, "inputs": items(inputs), "keep_open": keep_open}
    return Call("POST", "/api/jobs", model(JobInfo), json=body)


def job(job_id: str) -> Call[JobInfo]:
    return Call("GET", _job(job_id), model(JobInfo))


def jobs(flow: str | None, status: str | None, limit: int, offset: int) -> Call[JobPage]:
    params = query(flow=flow, status=status, limit=limit, offset=offset)
    return Call("GET", "/api/jobs", model(JobPage), params=params)


def send(job_id: str, slot: str, values: list[Any], timeout_s: float | None) -> Call[int]:
    body: dict[str, Any] = {"slot": slot, "items": values}
    if timeout_s is not None:  # (none: the server's default, lowered to its cap)
        body["timeout_s"] = timeout_s
    return Call("POST", _job(job_id, "/input"), field("accepted"), json=body)


def close(job_id: str) -> Call[JobInfo]:
    return Call("POST", _job(job_id, "/close"), model(JobInfo))


def pause(job_id: str, reason: str) -> Call[JobInfo]:
    return Call("POST", _job(job_id, "/pause"), model(JobInfo), json={"reason": reason})


def resume(job_id: str) -> Call[ResumedJob]:
    return Call("POST", _job(job_id, "/resume"), model(ResumedJob))


def cancel(job_id: str) -> Call[JobInfo]:
    return Call("POST", _job(job_id, "/cancel"), model(JobInfo))


def result(job_id: str, wait_s: float) -> Call[JobResultInfo]:
    return Call("GET", _job(job_id, "/result"), model(JobResultInfo), params={"wait_s": wait_s})


def wait_cap() -> Call[float | None]:
    """The server's cap on ``wait_s`` of ``/result``, as its ``/openapi.json`` states it
    (``maximum``; ``None`` if it states none)."""
    return Call("GET", "/openapi.json", _result_wait_cap)


def _result_wait_cap(schema: Any) -> float | None:
    operation = schema.get("paths", {}).get("/api/jobs/{job_id}/result", {}).get("get", {})
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "wait_s":
            cap = parameter.get("schema", {}).get("maximum")
            return float(cap) if isinstance(cap, int | float) else None
    return None


def wait_refused(error: RequestError) -> bool:
    """A ``422`` for the ``wait_s`` asked: over the server's ``max_wait_s``."""
    found = error.body.get("errors")
    return error.status == 422 and any(
        isinstance(e, dict) and e.get("loc") == ["query", "wait_s"]
        for e in (found or [])  # type: ignore[attr-defined]
    )


def queues(job_id: str) -> Call[JobQueues]:
    return Call("GET", _job(job_id, "/queues"), model(JobQueues))


def dead_letters(job_id: str, limit: int, offset: int) -> Call[DeadLetterPage]:
    params = {"limit": limit, "offset": offset}
    return Call("GET", _job(job_id, "/dead-letters"), model(DeadLetterPage), params=params)


# -- debugger -------------------------------------------------------------------------------


def add_breakpoint(
    job_id: str, kind: str, target: str, condition: str | None, once: bool, scope: str, enabled: bool
) -> Call[BreakpointInfo]:
    body = {"kind": kind, "target": target, "condition": condition, "once": once, "scope": scope}
    body["enabled"] = enabled
    return Call("POST", _job(job_id, "/breakpoints"), model(BreakpointInfo), json=body)


def add_breakpoints(job_id: str, specs: list[dict[str, Any]]) -> Call[BatchCreated]:
    return Call("POST", _job(job_id, "/breakpoints/batch"), model(BatchCreated), json={"breakpoints": specs})


def breakpoints(job_id: str) -> Call[list[BreakpointInfo]]:
    return Call("GET", _job(job_id, "/breakpoints"), models(BreakpointInfo))


def change_breakpoint(job_id: str, bp_id: str, changes: dict[str, Any]) -> Call[BreakpointInfo]:
    path = _job(job_id, f"/breakpoints/{quote(bp_id, safe='')}")
    return Call("PATCH", path, model(BreakpointInfo), json=changes)


def remove_breakpoint(job_id: str, bp_id: str) -> Call[None]:
    path = _job(job_id, f"/breakpoints/{quote(bp_id, safe='')}")
    return Call("DELETE", path, nothing, expect_json=False)


def debug(job_id: str, slot: str | None, limit: int | None) -> Call[DebugView]:
    return Call("GET", _job(job_id, "/debug"), model(DebugView), params=query(slot=slot, limit=limit))


def step(job_id: str, into: bool, wait_s: float) -> Call[DebugView]:
    path = _job(job_id, "/debug/step-into" if into else "/debug/step")
    return Call("POST", path, model(DebugView), params={"wait_s": wait_s})


def debug_resume(job_id: str) -> Call[ResumedJob]:
    return Call("POST", _job(job_id, "/debug/resume"), model(ResumedJob))


def evaluate(job_id: str, expr: str) -> Call[Any]:
    return Call("POST", _job(job_id, "/debug/eval"), field("value"), json={"expr": expr})


def set_item(job_id: str, item: Any) -> Call[Location]:
    return Call("POST", _job(job_id, "/debug/set-item"), model(Location), json={"item": item})


def drop_item(job_id: str, reason: str) -> Call[DebugView]:
    return Call("POST", _job(job_id, "/debug/drop-item"), model(DebugView), json={"reason": reason})


def set_state(job_id: str, key: str, value: Any, routine: str | None) -> Call[RoutineState]:
    body = {"key": key, "value": value, "routine": routine}
    return Call("POST", _job(job_id, "/debug/set-state"), model(RoutineState), json=body)


# -- durable jobs ---------------------------------------------------------------------------


def submit(
    flow: str,
    inputs: Inputs | None,
    options: dict[str, Any],
    *,
    pool: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Call[StoreJob]:
    body = _job_body(flow, inputs, _placed(pool, labels, options))
    return Call("POST", "/api/store/jobs", model(StoreJob), json=body)


def submit_many(
    jobs: Sequence[tuple[str, Inputs | None]],
    options: dict[str, Any],
    *,
    pool: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Call[StoreJobIds]:
    """One request for the batch: every job with the same options (``pool`` and ``labels``
    included)."""
    placed = _placed(pool, labels, options)
    body = {"jobs": [_job_body(flow, inputs, placed) for flow, inputs in jobs]}
    return Call("POST", "/api/store/jobs/batch", model(StoreJobIds), json=body)


def _job_body(flow: str, inputs: Inputs | None, options: dict[str, Any]) -> dict[str, Any]:
    return {"flow": flow, "inputs": items(inputs), **options}


def _placed(pool: str | None, labels: Mapping[str, str] | None, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``pool`` and ``labels`` when given (a server with ``--registry``
    assigns the job to a node of the pool)."""
    if pool is not None:
        options["pool"] = pool
    if labels is not None:
        options["labels"] = dict(labels)
    return options


def store_job(job_id: str) -> Call[StoreJob]:
    return Call("GET", _store(job_id), model(StoreJob))


def store_jobs(
    queue: str | None, status: str | None, flow: str | None, limit: int, offset: int
) -> Call[StoreJobPage]:
    params = query(queue=queue, status=status, flow=flow, limit=limit, offset=offset)
    return Call("GET", "/api/store/jobs", model(StoreJobPage), params=params)


def store_steps(job_id: str) -> Call[list[StoreStep]]:
    return Call("GET", _store(job_id, "/steps"), models(StoreStep))


def store_events(job_id: str) -> Call[list[StoreEvent]]:
    return Call("GET", _store(job_id, "/events"), models(StoreEvent))


def retry(job_id: str, from_start: bool) -> Call[StoreJob]:
    return Call("POST", _store(job_id, "/retry"), model(StoreJob), json={"from_start": from_start})


def cancel_stored(job_id: str) -> Call[StoreJob]:
    return Call("POST", _store(job_id, "/cancel"), model(StoreJob))
