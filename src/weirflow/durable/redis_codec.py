"""Records of the Redis store as hash fields and JSON text, and back.

A ``None`` field is absent from the job's hash. Floats are written with ``repr`` (exact
and shortest), so a time read back is the time written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import orjson

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


def _decoder(name: str) -> Callable[[str], Any]:
    if name in _JSON:
        return json.loads
    if name == "backoff":
        return backoff_from
    if name == "from_start":
        return lambda text: text == "1"
    if name in _FLOATS:
        return float
    if name in _INTS:
        return int
    return str


#: per column: its name, how its text is read, and its value when absent (a claim reads
#: every job it takes: one lookup per column, not a chain of tests)
_DECODERS = tuple((name, _decoder(name), False if name == "from_start" else None) for name in JOB_COLUMNS)


def job_from_hash(raw: Mapping[Any, Any]) -> JobRecord:
    return _job({_text(k): _text(v) for k, v in raw.items()})


def job_from_flat(flat: list[Any]) -> JobRecord:
    """A job from an ``HGETALL`` answered inside a script (a flat list of fields and values)."""
    texts = [_text(x) for x in flat]
    return _job(dict(zip(texts[::2], texts[1::2], strict=True)))


def _job(h: dict[str, str]) -> JobRecord:
    d: dict[str, Any] = {}
    for name, decode, absent in _DECODERS:
        text = h.get(name)
        d[name] = absent if text is None else decode(text)
    return JobRecord(**d)


def step_field(step: StepRecord) -> str:
    return json.dumps([step.routine, step.seq])


def step_text(step: StepRecord) -> str:
    """The step as JSON: by orjson (a step row per handler call: the hot path), but for what
    it would write otherwise than the json module (a progress that is not finite: ``null``
    instead of ``NaN``; text it refuses, such as a lone surrogate)."""
    row = {name: getattr(step, name) for name in STEP_COLUMNS}
    if math.isfinite(step.progress):
        try:
            return orjson.dumps(row).decode()  # (text: the scripts' MessagePack has no bin type)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(row)


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
