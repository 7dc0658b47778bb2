"""Rows of the SQL backends to records and back (column order: ``JOB_COLUMNS``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from .models import JOB_COLUMNS, STEP_COLUMNS, EventRecord, JobRecord, StepRecord, backoff_from, from_json

JOB_SELECT = ", ".join(JOB_COLUMNS)
STEP_SELECT = ", ".join(STEP_COLUMNS)

# the columns a state change may touch, written back by ``job_update``
MUTABLE = (
    "status",
    "attempt",
    "runs",
    "run_at",
    "worker_id",
    "lease_expires_at",
    "stalls",
    "error",
    "outputs",
    "from_start",
    "started_at",
    "finished_at",
    "dead_letters",
    "error_detail",
    "node",
)
_JSON = ("outputs", "dead_letters")


_INPUTS, _OUTPUTS, _LETTERS, _BACKOFF, _FROM_START = (
    JOB_COLUMNS.index(c) for c in ("inputs", "outputs", "dead_letters", "backoff", "from_start")
)


def job_from_row(row: Sequence[Any]) -> JobRecord:
    """A ``JobRecord`` from a row of ``JOB_COLUMNS`` (its fields, in order: passed by
    position, a claim reads one per job)."""
    if len(row) != len(JOB_COLUMNS):
        raise ValueError(f"a job row has {len(JOB_COLUMNS)} columns, not {len(row)}")
    r = list(row)
    r[_INPUTS] = from_json(r[_INPUTS])
    if r[_OUTPUTS] is not None:
        r[_OUTPUTS] = from_json(r[_OUTPUTS])
    if r[_LETTERS] is not None:
        r[_LETTERS] = from_json(r[_LETTERS])
    r[_BACKOFF] = backoff_from(r[_BACKOFF])
    r[_FROM_START] = bool(r[_FROM_START])
    return JobRecord(*r)


def step_from_row(row: Sequence[Any]) -> StepRecord:
    return StepRecord(**dict(zip(STEP_COLUMNS, row, strict=True)))


def event_from_row(row: Sequence[Any]) -> EventRecord:
    id_, job_id, queue, kind, at, data = row
    return EventRecord(id_, job_id, queue, kind, at, from_json(data) or {})


def mutable_values(job: JobRecord, encode: Callable[[Any], str] = json.dumps) -> list[Any]:
    """The row's changeable columns; JSON ones through ``encode`` (PostgreSQL passes
    ``storable.pg_json``, so that ``jsonb`` gives its floats back as floats)."""
    values: list[Any] = []
    for name in MUTABLE:
        value = getattr(job, name)
        if name in _JSON and value is not None:
            value = encode(value)
        values.append(value)
    return values
