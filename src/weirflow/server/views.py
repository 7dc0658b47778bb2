"""Engine objects as the plain data the API answers with (shapes in ``models``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..flow.graph import Flow
from ..runtime.job import Job
from ..runtime.results import DeadLetter, JobResult
from .jsonsafe import jsonable

_SUMMED = ("size", "capacity", "enqueued", "processed", "in_flight", "dead_lettered", "blocked_emitters")


def flow_summary(flow: Flow) -> dict[str, Any]:
    return {
        "name": flow.name,
        "routines": list(flow.routines),
        "inputs": list(flow.slot_paths()),
        "outputs": list(flow.outputs),
    }


def job_info(job: Job) -> dict[str, Any]:
    pause = None
    if job.paused and job.pause_reason is not None:
        pause = {"reason": job.pause_reason, "at": job.paused_at}
    return {
        "id": job.id,
        "flow": job.flow.name,
        "status": job.status.value,
        "error": job.error,
        "pause": pause,
        "created_at": job.created_at,
        "input_closed": job.input_closed,
    }


def dead_letter(letter: DeadLetter) -> dict[str, Any]:
    return {
        "slot": letter.slot,
        "item": jsonable(letter.item),
        "reason": letter.reason,
        "error": letter.error,
        "at": letter.at,
    }


def job_result(result: JobResult) -> dict[str, Any]:
    return {
        "status": result.status.value,
        "outputs": {path: jsonable(items) for path, items in result.outputs.items()},
        "error": result.error,
        "dead_letters": [dead_letter(d) for d in result.dead_letters],
    }


def job_queues(queues: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every slot's stats (``Job.queue_dicts``) with counts of full and near-full slots."""
    full = near_full = 0
    for s in queues.values():
        state = s["state"]
        if state == "full":
            full += 1
        elif state == "near_full":
            near_full += 1
    return {"slots": queues, "full": full, "near_full": near_full}


def flow_queues(flow: Flow, jobs: Iterable[Job]) -> dict[str, Any]:
    """Slot stats summed over ``jobs`` (usage and high water: the maximum)."""
    slots: dict[str, dict[str, Any]] = {
        path: {"jobs": 0, "usage": 0.0, "high_water": 0, "blocked_s": 0.0, "full": 0, "near_full": 0}
        | dict.fromkeys(_SUMMED, 0)
        for path in flow.slot_paths()
    }
    n_jobs = 0
    for job in jobs:
        n_jobs += 1
        for path, s in job.queues().items():
            agg = slots.get(path)
            if agg is None:  # cannot happen for a job of this flow; be safe anyway
                continue
            agg["jobs"] += 1
            for key in _SUMMED:
                agg[key] += getattr(s, key)
            agg["blocked_s"] += s.blocked_s
            agg["usage"] = max(agg["usage"], s.usage)
            agg["high_water"] = max(agg["high_water"], s.high_water)
            agg["full"] += s.state == "full"
            agg["near_full"] += s.state == "near_full"
    return {
        "flow": flow.name,
        "jobs": n_jobs,
        "slots": slots,
        "full": sum(a["full"] for a in slots.values()),
        "near_full": sum(a["near_full"] for a in slots.values()),
    }
