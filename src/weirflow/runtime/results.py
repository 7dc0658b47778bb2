"""What the runtime reports: statuses, queue and routine statistics, dead letters, results."""

from __future__ import annotations

import enum
import traceback
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..flow.policy import NEAR_FULL_RATIO

_D = TypeVar("_D")


class JobStatus(enum.StrEnum):
    """Lifecycle of a job. ``PAUSED`` is its own state: never idle, never complete."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        # identity against module constants: on 3.11 ``JobStatus.X`` goes through a
        # descriptor, and ``in`` compares with ``==``, which made this show in profiles
        return self is _COMPLETED or self is _FAILED or self is _CANCELLED


_COMPLETED, _FAILED, _CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


@dataclass(frozen=True)
class QueueStats:
    """One slot of one job at one moment.

    ``enqueued == processed + size + in_flight + dead_lettered`` always holds.
    ``state`` is ``"full"``, ``"near_full"`` (>= 80 %), ``"paused"`` (the job or the
    routine is paused) or ``"ok"``; ``paused`` says the same independently of fill.
    """

    slot: str
    size: int
    capacity: int
    usage: float
    high_water: int
    enqueued: int
    processed: int
    in_flight: int
    dead_lettered: int
    blocked_emitters: int
    blocked_s: float
    state: str
    overflow: str
    paused: bool

    def balanced(self) -> bool:
        """The accounting invariant for this snapshot."""
        return self.enqueued == self.processed + self.size + self.in_flight + self.dead_lettered

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class RoutineStats:
    """Handler activity of one routine in one job."""

    routine: str
    calls: int
    failures: int
    retries: int
    busy_s: float
    active: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class InputStats:
    """What a job accepted from outside (starting inputs and sends) and what became of it.

    ``accepted == entered + waiting + dead_lettered`` always holds: an accepted input
    has ``entered`` its slot (and is counted there, in ``QueueStats.enqueued``), is
    still ``waiting`` to (a starting input not fed yet, a ``send`` waiting for room),
    or was dead-lettered before it entered (the job ended first). A ``send`` that
    raised ``SlotFullError`` was not accepted. In a finished job ``waiting == 0``.
    """

    accepted: int = 0
    entered: int = 0
    waiting: int = 0
    dead_lettered: int = 0

    def balanced(self) -> bool:
        return self.accepted == self.entered + self.waiting + self.dead_lettered

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class JobStats:
    """Every slot's ``QueueStats``, every routine's ``RoutineStats`` and the job's inputs.

    ``accepted == processed_at_entry + dead_lettered_at_entry`` holds for a finished
    job whose entry slots (those given inputs) are fed by nothing else: see
    ``processed_at_entry``.
    """

    slots: dict[str, QueueStats]
    routines: dict[str, RoutineStats]
    duration_s: float
    inputs: InputStats = field(default_factory=InputStats)
    entry_slots: tuple[str, ...] = ()

    @property
    def accepted(self) -> int:
        """Inputs the job accepted (``inputs.accepted``)."""
        return self.inputs.accepted

    @property
    def processed_at_entry(self) -> int:
        """Items the handlers of the entry slots (the slots inputs go to) processed."""
        return sum(self.slots[p].processed for p in self.entry_slots)

    @property
    def dead_lettered_at_entry(self) -> int:
        """Inputs dead-lettered before they entered a slot, plus the entry slots' dead letters."""
        return self.inputs.dead_lettered + sum(self.slots[p].dead_lettered for p in self.entry_slots)

    def balanced(self) -> bool:
        """The accounting invariant for every slot, and ``inputs.balanced()``."""
        return self.inputs.balanced() and all(s.balanced() for s in self.slots.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "inputs": self.inputs.to_dict(),
            "slots": {k: v.to_dict() for k, v in self.slots.items()},
            "routines": {k: v.to_dict() for k, v in self.routines.items()},
        }


@dataclass(frozen=True)
class DeadLetter:
    """An item that did not reach (or finish in) a handler, and why.

    ``reason`` is one of ``dropped_oldest``, ``dropped_newest``, ``handler_failed``,
    ``job_failed`` (``error`` is the job's error), ``job_cancelled``, ``job_timeout``
    (the job was cancelled because it ran past its time limit), ``unconsumed`` (left in a join slot when
    no partner can arrive), ``input_rejected`` (an initial input a full ``fail``
    slot refused), ``on_end_failed``, or a reason a hook gave (the debugger's are
    ``debugger:<reason>``). ``slot`` is ``"routine.slot"``; for an item dropped at
    emit time by a hook it is the event ``"routine.event"``, for ``on_end`` it is
    ``"routine.on_end"``.
    """

    slot: str
    item: Any
    reason: str
    error: str | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "item": self.item,
            "reason": self.reason,
            "error": self.error,
            "at": self.at,
        }


@dataclass(frozen=True)
class JobResult:
    """A finished job: status, collected outputs, error text, dead letters and stats.

    ``dead_letters`` holds the first ``Engine(max_dead_letters=...)`` of them (all of
    them, unless a job makes more); ``dead_letter_count`` counts every one, and
    ``dead_letter_reasons`` counts them by reason. Hooks (``on_dead_letter``) and the
    journal see every one. ``traceback`` is the formatted traceback of the exception
    that failed the job, if one did.
    """

    job_id: str
    status: JobStatus
    outputs: dict[str, list[Any]]
    error: str | None
    dead_letters: list[DeadLetter]
    stats: JobStats
    dead_letter_count: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    traceback: str | None = None

    @property
    def dead_letters_truncated(self) -> bool:
        """Some dead letters were counted but not kept (``dead_letters`` is a prefix)."""
        return self.dead_letter_count > len(self.dead_letters)


@dataclass(frozen=True)
class PausePoint:
    """Where a pause took effect: when, why, and a snapshot of every slot."""

    at: float
    reason: str
    queues: dict[str, QueueStats] = field(default_factory=dict)


@dataclass(frozen=True)
class ResumeReport:
    """What resuming found: ``warnings`` name every slot that is full or near full."""

    paused_s: float
    warnings: list[str]
    queues: dict[str, QueueStats] = field(default_factory=dict)


def made_from(cls: type[_D], fields: dict[str, Any]) -> _D:
    """An instance of the frozen dataclass ``cls`` whose ``fields`` (every field, by name)
    are given: the same object its ``__init__`` makes, without the generated
    ``__init__``'s ``object.__setattr__`` per field (a finished job's stats and result
    are made once per job, and that was a tenth of a short job's cost). Only for classes
    here with no ``__post_init__``, no defaults left out and no ``__slots__``."""
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", fields)
    return obj


def fill_warnings(queues: dict[str, QueueStats]) -> list[str]:
    """A line for every slot that is full or near full (a resume's warnings)."""
    warnings = []
    for path, s in queues.items():
        if s.size >= s.capacity:
            waiting = f", {s.blocked_emitters} emitter(s) waiting" if s.blocked_emitters else ""
            warnings.append(f"slot {path} is full ({s.size}/{s.capacity}{waiting})")
        elif s.usage >= NEAR_FULL_RATIO:
            warnings.append(f"slot {path} is near full ({s.size}/{s.capacity}, {s.usage:.0%})")
    return warnings


def format_traceback(error: BaseException) -> str:
    """``error``'s traceback as Python prints it (what a failed step and job keep)."""
    return "".join(traceback.format_exception(error)).rstrip()
