"""Records of the Redis store as hash fields and JSON text, and back.

A ``None`` field is absent from the job's hash. Floats are written with ``repr`` (exact
and shortest), so a time read back is the time written.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
from collections.abc import Mapping
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


#: the columns by how their text is read (a claim reads every job it takes: a pass per kind,
#: no chain of tests per column); ``from_start`` (absent: false) and ``backoff`` apart
_STRS = tuple(n for n in JOB_COLUMNS if n not in _INTS | _FLOATS | _JSON | {"backoff", "from_start"})
_INT_COLUMNS = tuple(n for n in JOB_COLUMNS if n in _INTS)
_FLOAT_COLUMNS = tuple(n for n in JOB_COLUMNS if n in _FLOATS)
_JSON_COLUMNS = tuple(n for n in JOB_COLUMNS if n in _JSON)


#: every integer orjson cannot read exactly (outside [-2**63, 2**64)) has a run of at least
#: 19 digits (``postgres_base._LONG_DIGITS``: orjson reads one just below -2**63 as a float)
_LONG_DIGITS = re.compile("[0-9]{19}")


def json_loads(text: str) -> Any:
    """JSON the json module wrote (``field_text``), read by orjson (in C), but text with a run
    of 19 digits (an integer orjson would not read exactly) and what orjson refuses (``NaN``,
    a lone surrogate's escape), read by the json module."""
    if _LONG_DIGITS.search(text) is None:
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(text)
    return json.loads(text)


def job_from_hash(raw: Mapping[Any, Any]) -> JobRecord:
    return _job({_text(k): _text(v) for k, v in raw.items()})


def job_from_packed(packed: bytes) -> JobRecord:
    """A job from the JSON object of its hash a script answered (``CLAIM``: ``cjson``'s text,
    every value a string; orjson reads it in a third of msgpack's time for a MessagePack map)."""
    return _job(orjson.loads(packed))


def _job(h: Mapping[str, str]) -> JobRecord:
    get = h.get
    d: dict[str, Any] = {name: get(name) for name in _STRS}
    for name in _INT_COLUMNS:
        text = get(name)
        d[name] = None if text is None else int(text)
    for name in _FLOAT_COLUMNS:
        text = get(name)
        d[name] = None if text is None else float(text)
    for name in _JSON_COLUMNS:
        text = get(name)
        d[name] = None if text is None else json_loads(text)
    text = get("backoff")
    d["backoff"] = None if text is None else backoff_from(text)
    d["from_start"] = get("from_start") == "1"
    return JobRecord(**d)


def step_field(step: StepRecord) -> str:
    """A step's field in its job's step rows (``["routine", seq]``, as the json module writes it)."""
    return _step_field(step.routine, step.seq)


@functools.lru_cache(maxsize=4096)
def _step_field(routine: str, seq: int) -> str:
    # (a step row per handler call; the json module's dumps is microseconds, a hit here is not)
    return json.dumps([routine, seq])


def step_row(step: StepRecord) -> list[str]:
    """A step row as the ``STEPS`` and ``COMPLETE`` scripts take it: [job id, run, field, JSON, status]."""
    return [step.job_id, str(step.run), step_field(step), step_text(step), step.status]


def json_text(value: Any) -> str:
    """``value`` as JSON text: by orjson (in C), but by the json module for what orjson refuses
    (an integer past 64 bits, a key that is not a string, a lone surrogate) and for any text
    with ``null`` in it (orjson writes NaN and the infinities as ``null``, the json module as
    ``NaN``, ``Infinity``: read back, they must be what was written)."""
    try:
        text = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value)
    if b"null" in text:
        return json.dumps(value)
    return text.decode()


def step_text(step: StepRecord) -> str:
    """The step as JSON: by orjson (a step row per handler call: the hot path), but for what
    it would write otherwise than the json module (a progress that is not finite: ``null``
    instead of ``NaN``; text it refuses, such as a lone surrogate)."""
    if math.isfinite(step.progress):
        try:  # (a dataclass: orjson writes its fields, ``STEP_COLUMNS``, in their order)
            return orjson.dumps(step).decode()  # (text: the scripts' MessagePack has no bin type)
        except orjson.JSONEncodeError:
            pass
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
