"""Records of the Redis store as hash fields and JSON text, and back.

A ``None`` field is absent from the job's hash. Floats are written with ``repr`` (exact
and shortest), so a time read back is the time written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .models import (
    JOB_COLUMNS,
    STEP_COLUMNS,
    EventRecord,
    JobRecord,
    StepRecord,
    backoff_from,
    backoff_to_json,
)
from .rows import MUTABLE
from .schedules import Schedule, schedule_from_row, schedule_row

_INTS = frozenset({"attempt", "runs", "max_attempts", "priority", "stalls"})
_FLOATS = frozenset({"run_at", "timeout_s", "lease_expires_at", "created_at", "started_at", "finished_at"})
_JSON = frozenset({"inputs", "outputs", "dead_letters"})


def num(value: float) -> str:
    """A number as exact text for Redis (and for Lua, which parses it with ``tonumber``)."""
    return repr(float(value))


def runkey(run_at: float) -> str:
    """``run_at`` in microseconds, zero-padded: ready jobs of one priority sort by it."""
    return f"{max(0, round(run_at * 1_000_000)):020d}"


def field_text(name: str, value: Any) -> str:
    if name in _JSON:
        return json.dumps(value)
    if name == "backoff":
        return backoff_to_json(value)
    if name == "from_start":
        return "1" if value else "0"
    if name in _FLOATS:
        return num(value)
    if name in _INTS:
        return str(int(value))
    return str(value)


def job_fields(job: JobRecord, names: tuple[str, ...] = JOB_COLUMNS) -> tuple[dict[str, str], list[str]]:
    """The fields of ``job`` to set, and the names of those that are ``None`` (to delete)."""
    present: dict[str, str] = {}
    absent: list[str] = []
    for name in names:
        value = getattr(job, name)
        if value is None:
            absent.append(name)
        else:
            present[name] = field_text(name, value)
    return present, absent


def mutable_fields(job: JobRecord) -> tuple[dict[str, str], list[str]]:
    return job_fields(job, MUTABLE)


def job_from_hash(raw: Mapping[Any, Any]) -> JobRecord:
    h = {_text(k): _text(v) for k, v in raw.items()}
    d: dict[str, Any] = {}
    for name in JOB_COLUMNS:
        text = h.get(name)
        if text is None:
            d[name] = False if name == "from_start" else None
        elif name in _JSON:
            d[name] = json.loads(text)
        elif name == "backoff":
            d[name] = backoff_from(text)
        elif name == "from_start":
            d[name] = text == "1"
        elif name in _FLOATS:
            d[name] = float(text)
        elif name in _INTS:
            d[name] = int(text)
        else:
            d[name] = text
    return JobRecord(**d)


def pairs(flat: list[Any]) -> dict[str, str]:
    """An ``HGETALL`` answered inside a script (a flat list) as a dict."""
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def step_field(step: StepRecord) -> str:
    return json.dumps([step.routine, step.seq])


def step_text(step: StepRecord) -> str:
    return json.dumps({name: getattr(step, name) for name in STEP_COLUMNS})


def step_from(text: str | bytes, override: str | bytes | None) -> StepRecord:
    d = json.loads(text)
    if override is not None:
        d.update(json.loads(override))
    return StepRecord(**d)


def event_from(text: str | bytes) -> EventRecord:
    d = json.loads(text)
    return EventRecord(d["id"], d["job_id"], d["queue"], d["kind"], float(d["at"]), d["data"] or {})


def schedule_text(s: Schedule) -> str:
    return json.dumps(schedule_row(s))


def schedule_from(text: str | bytes) -> Schedule:
    return schedule_from_row(json.loads(text))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
