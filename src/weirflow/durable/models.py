"""The durable store's records: what a job, a step and an event look like outside the store."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import storable
from ..errors import JobError
from ..flow.policy import Backoff
from ..storable import text_problem as text_problem  # (re-exported: its home is weirflow.storable)

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)
FINISHED = (COMPLETED, FAILED, CANCELLED)
#: a step whose attempt ended with its worker (a crash, a takeover, a shutdown, a cancel)
INTERRUPTED = "interrupted"

DEFAULT_QUEUE = "default"
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=60.0, jitter=True)


def backoff_to_json(backoff: Backoff) -> str:
    return json.dumps(
        {
            "initial_s": backoff.initial_s,
            "factor": backoff.factor,
            "max_s": backoff.max_s,
            "jitter": backoff.jitter,
        }
    )


#: the ``Backoff`` of each stored form read so far (a store reads one per claimed job, and
#: nearly every job has the default; a frozen ``Backoff`` is made and checked in ~3 µs)
_BACKOFFS: dict[Any, Backoff] = {}
_MAX_BACKOFFS = 1024


def backoff_from(value: Any) -> Backoff:
    """A job's ``Backoff`` from its stored form: JSON text, or the mapping a store read."""
    text = isinstance(value, str | bytes)
    try:
        key = value if text else tuple(value.items())
        known = _BACKOFFS.get(key)
    except (AttributeError, TypeError):  # (not a mapping of plain values: no cache)
        key = known = None
    if known is not None:
        return known
    backoff = Backoff(**(json.loads(value) if text else value))
    if key is not None:
        if len(_BACKOFFS) >= _MAX_BACKOFFS:
            _BACKOFFS.clear()
        _BACKOFFS[key] = backoff
    return backoff


def to_json(value: Any, what: str) -> str:
    """``value`` as JSON text; ``UnstorableError`` naming where under ``what`` if a durable
    job cannot hold it exactly (``weirflow.storable``)."""
    return storable.encode(value, what).decode()


def unstorable(value: Any, max_depth: int | None = None) -> str | None:
    """Why ``value`` cannot be stored exactly on every backend (``weirflow.storable``), with
    where in it when that is not the value itself, or ``None``."""
    found = storable.problem(value, max_depth=storable.MAX_DEPTH if max_depth is None else max_depth)
    if found is None:
        return None
    path, why = found
    return f"{path}: {why}" if path else why


def from_json(value: Any) -> Any:
    """A JSON column as Python (PostgreSQL already decodes ``jsonb``)."""
    if value is None or not isinstance(value, str | bytes):
        return value
    return json.loads(value)


#: a completion for ``Store.complete``: ``(job_id, outputs)`` or ``(job_id, outputs, dead_letters)``
Done = tuple[str, int, dict[str, Any]] | tuple[str, int, dict[str, Any], list[dict[str, Any]]]
"""A completion: ``(job_id, token, outputs)`` or ``(job_id, token, outputs, dead_letters)``."""


def done_parts(done: Done) -> tuple[str, int, dict[str, Any], list[dict[str, Any]] | None]:
    """``(job_id, token, outputs, dead_letters or None)`` of a completion."""
    if len(done) == 4:
        return done[0], done[1], done[2], done[3]
    return done[0], done[1], done[2], None


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` claims in any window of ``per_s`` seconds (``"5/1s"``)."""

    limit: int
    per_s: float

    _PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*(ms|s|m|h)?\s*$")

    @classmethod
    def parse(cls, text: str | Rate) -> Rate:
        """``"5/1s"``, ``"100/m"``, ``"10/500ms"``; ``ValueError`` otherwise."""
        if isinstance(text, Rate):
            return text
        m = cls._PATTERN.match(text)
        if m is None:
            raise ValueError(f"rate {text!r} must look like 5/1s, 100/m or 10/500ms")
        limit = int(m.group(1))
        amount = float(m.group(2)) if m.group(2) else 1.0
        per_s = amount * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(3) or "s"]
        if limit < 1 or not per_s > 0 or math.isinf(per_s):
            raise ValueError(f"rate {text!r}: the limit and the window must be positive")
        return cls(limit, per_s)

    def __str__(self) -> str:
        return f"{self.limit}/{self.per_s:g}s"


@dataclass(frozen=True)
class JobSpec:
    """A job to submit: everything but the state the store keeps."""

    flow: str
    inputs: dict[str, Any]
    queue: str = DEFAULT_QUEUE
    max_attempts: int = DEFAULT_ATTEMPTS
    backoff: Backoff = DEFAULT_BACKOFF
    delay_s: float = 0.0
    priority: int = 0
    idempotency_key: str | None = None
    timeout_s: float | None = None
    #: the node the job is assigned to (``None``: any worker of the queue may take it); the
    #: store writes it only while the node's queued and running jobs stay within
    #: ``node_capacity`` (else ``NodeFullError``)
    node: str | None = None
    node_capacity: int | None = None

    def __post_init__(self) -> None:
        named: dict[str, object] = {"flow": self.flow, "queue": self.queue}
        if self.idempotency_key is not None:
            named["idempotency_key"] = self.idempotency_key
        if self.node is not None:
            named["node"] = self.node
            cap = self.node_capacity
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                raise JobError("a job assigned to a node needs node_capacity >= 1")
        elif self.node_capacity is not None:
            raise JobError("node_capacity is the capacity of JobSpec.node: give node too")
        for what, text in named.items():
            if not isinstance(text, str) or not text:
                raise JobError(f"{what} must be a non-empty string")
            storable.check(text, what)
        if self.max_attempts < 1:
            raise JobError("attempts must be >= 1")
        # finite: a store cannot hold inf/nan alike (JSON has no such number)
        if not math.isfinite(self.delay_s) or self.delay_s < 0:
            raise JobError("delay_s must be a finite number >= 0")
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise JobError("timeout_s must be a finite number > 0 (or None: no timeout)")
        if not isinstance(self.inputs, dict):
            raise JobError("inputs must map 'routine.slot' to items")
        storable.check(self.inputs, "inputs")


@dataclass
class JobRecord:
    """A job as the store holds it. Times are seconds since the epoch (the store's clock).

    ``attempt`` counts the attempts that can fail (a stalled or released run gives its
    attempt back); ``runs`` counts every claim.
    """

    id: str
    flow: str
    inputs: dict[str, Any]
    queue: str
    status: str
    attempt: int
    runs: int
    max_attempts: int
    backoff: Backoff
    priority: int
    run_at: float
    idempotency_key: str | None
    timeout_s: float | None
    worker_id: str | None
    lease_expires_at: float | None
    stalls: int
    error: str | None
    outputs: dict[str, Any] | None
    from_start: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    dead_letters: list[dict[str, Any]] | None = None
    error_detail: str | None = None
    #: the node the job is assigned to while queued, or runs on (``None``: unassigned)
    node: str | None = None

    @property
    def token(self) -> int:
        """The fencing token of the job's latest claim (its ``runs``): every write of the
        worker that holds the job carries it, and the store refuses a stale one."""
        return self.runs

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["backoff"] = json.loads(backoff_to_json(self.backoff))
        return d


JOB_COLUMNS = tuple(JobRecord.__dataclass_fields__)


_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str | None) -> str | None:
    """``text`` as every store keeps it in what it reports about a job (a step's message,
    error and traceback, a job's error and error detail, a dead letter's error): NUL and
    unpaired surrogates, which PostgreSQL cannot hold in text or JSON, become U+FFFD, the
    same on every backend (so what a store reports does not depend on which it is). A
    job's data (inputs, outputs, items, state) is never changed: ``weirflow.storable``
    refuses such strings in it at the door."""
    if text is None or _UNSTORABLE_TEXT.search(text) is None:
        return text
    return _UNSTORABLE_TEXT.sub("\ufffd", text)


def storable_letters(letters: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Dead letters (``DeadLetter.to_dict``) with their ``error`` as ``storable_text`` has it."""
    if not letters:
        return letters
    out = []
    for letter in letters:
        error = letter.get("error")
        if isinstance(error, str) and _UNSTORABLE_TEXT.search(error) is not None:
            letter = {**letter, "error": storable_text(error)}
        out.append(letter)
    return out


@dataclass
class StepRecord:
    """One handler call of a job, for display (``weirflow jobs steps``): one row per
    ``(job_id, routine, seq)``, which a re-run of the call updates.

    ``attempt`` is the handler's latest attempt (``ctx.attempt``); ``run`` the fencing
    token of the claim that wrote the row (the job's ``runs`` then: every claim, after a
    stall too, starts a new run). ``status`` is ``running``, ``completed``, ``failed`` or
    ``interrupted`` (its worker died, lost the job or gave it back: ``completed_at`` is
    when the store found out, ``error`` says why, ``worker`` is that worker).
    """

    job_id: str
    routine: str
    seq: int
    status: str
    attempt: int = 1
    run: int = 1
    progress: float = 0.0
    message: str = ""
    started_at: float | None = None
    completed_at: float | None = None
    error: str | None = None
    worker: str | None = None
    traceback: str | None = None

    def __post_init__(self) -> None:  # (text every store can hold: ``storable_text``)
        message, error, tb = self.message, self.error, self.traceback
        if (
            _UNSTORABLE_TEXT.search(message) is not None
            or (error is not None and _UNSTORABLE_TEXT.search(error) is not None)
            or (tb is not None and _UNSTORABLE_TEXT.search(tb) is not None)
        ):
            self.message = storable_text(message) or ""
            self.error = storable_text(error)
            self.traceback = storable_text(tb)

    def to_dict(self) -> dict[str, Any]:
        """The shape of API.md's ``jobs show --json`` steps."""
        return {
            "routine": self.routine,
            "seq": self.seq,
            "status": self.status,
            "attempt": self.attempt,
            "progress": self.progress,
            "message": self.message,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "error": self.error,
            "worker": self.worker,
            "traceback": self.traceback,
        }


STEP_COLUMNS = tuple(StepRecord.__dataclass_fields__)


@dataclass
class EventRecord:
    """A job state change or an alert. ``job_id`` is ``None`` for queue-wide alerts."""

    id: int
    job_id: str | None
    queue: str
    kind: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobInfo:
    """What ``engine.get_job``, ``engine.wait_job`` and ``weirflow jobs show`` report.

    ``outputs`` are the collected outputs of a completed job (``{}`` before it
    completes); ``dead_letters`` the items it dead-lettered (``{"slot", "item", "reason",
    "error", "at"}``); ``error_detail`` the traceback of the failure that failed it.
    """

    id: str
    flow: str
    status: str
    attempt: int
    error: str | None
    steps: list[StepRecord]
    outputs: dict[str, Any] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    error_detail: str | None = None
    #: the node the job is assigned to or runs on (``None``: unassigned; docs/cluster.md)
    node: str | None = None

    @classmethod
    def of(cls, record: JobRecord, steps: list[StepRecord]) -> JobInfo:
        return cls(
            record.id,
            record.flow,
            record.status,
            record.attempt,
            record.error,
            steps,
            outputs=dict(record.outputs or {}),
            dead_letters=list(record.dead_letters or []),
            error_detail=record.error_detail,
            node=record.node,
        )

    @property
    def finished(self) -> bool:
        """Completed, failed or cancelled: nothing will change it but a retry."""
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow": self.flow,
            "status": self.status,
            "attempt": self.attempt,
            "error": self.error,
            "error_detail": self.error_detail,
            "steps": [s.to_dict() for s in self.steps],
            "outputs": self.outputs,
            "dead_letters": self.dead_letters,
            "node": self.node,
        }


@dataclass
class Claim:
    """What one ``claim`` got: the jobs, and how long to wait before it is worth asking again
    (the rate window, or the next delayed job) when it got fewer than asked for."""

    jobs: list[JobRecord]
    wait_s: float | None = None


@dataclass(frozen=True)
class Retention:
    """How long finished jobs are kept (``None``: forever). Applied by the sweeper."""

    keep_completed_s: float | None = None
    keep_completed_count: int | None = None
    keep_failed_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("keep_completed_s", "keep_failed_s"):
            value = getattr(self, name)  # (nan compares false with every age: nothing deleted)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0 (or None), not {value!r}")
        if self.keep_completed_count is not None and self.keep_completed_count < 0:
            raise ValueError(f"keep_completed_count must be >= 0 (or None), not {self.keep_completed_count}")


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """A queue's jobs now: ``jobs`` by status (every status, 0 when none), ``delayed`` the
    queued ones not yet due (a delay or a retry's backoff), ``oldest_ready_at`` the
    ``run_at`` of the due job waiting longest (``None``: none waits), ``stalls`` the stalls
    of the queue's jobs the store holds."""

    queue: str
    jobs: dict[str, int]
    delayed: int = 0
    oldest_ready_at: float | None = None
    stalls: int = 0


def queue_counts(rows: Sequence[Sequence[Any]]) -> list[QueueCounts]:
    """``QueueCounts`` from ``(queue, status, jobs, delayed, oldest_ready_at, stalls)`` rows
    (one per queue and status: ``QUEUE_COUNTS_SQL``)."""
    jobs: dict[str, dict[str, int]] = {}
    delayed: dict[str, int] = {}
    oldest: dict[str, float | None] = {}
    stalls: dict[str, int] = {}
    for queue, status, n, late, first, stalled in rows:
        jobs.setdefault(queue, dict.fromkeys(STATUSES, 0))[status] = int(n)
        stalls[queue] = stalls.get(queue, 0) + int(stalled or 0)
        if status == QUEUED:
            delayed[queue], oldest[queue] = int(late or 0), first
    return [QueueCounts(q, jobs[q], delayed.get(q, 0), oldest.get(q), stalls[q]) for q in sorted(jobs)]


def counts_of(jobs: Iterable[JobRecord], now: float) -> list[QueueCounts]:
    """``QueueCounts`` of ``jobs`` at ``now`` (the backends without SQL: memory, Redis)."""
    rows: dict[tuple[str, str], list[Any]] = {}
    for j in jobs:
        row = rows.setdefault((j.queue, j.status), [j.queue, j.status, 0, 0, None, 0])
        row[2] += 1
        row[5] += j.stalls
        if j.status == QUEUED and j.run_at > now:
            row[3] += 1
        elif j.status == QUEUED and (row[4] is None or j.run_at < row[4]):
            row[4] = j.run_at
    return queue_counts(list(rows.values()))


#: one row per queue and status; ``{p}`` is the backend's parameter mark, given ``now`` twice
QUEUE_COUNTS_SQL = (
    "SELECT queue, status, count(*),"
    " sum(CASE WHEN status = 'queued' AND run_at > {p} THEN 1 ELSE 0 END),"
    " min(CASE WHEN status = 'queued' AND run_at <= {p} THEN run_at END),"
    " sum(stalls)"
    " FROM wf_jobs GROUP BY queue, status"
)


@dataclass
class SweepReport:
    """What one sweep did."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deleted: int = 0
