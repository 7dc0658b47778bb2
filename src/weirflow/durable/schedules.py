"""Schedules (repeatable jobs): what a schedule is, when it ticks, what a due one fires.

A schedule makes a job of ``flow`` with ``inputs`` at every tick of a cron expression
(``cron="*/5 * * * *"``, in the time zone ``tz``, parsed by ``cronsim``) or of a fixed
interval (``every_s=60``: ticks at the multiples of 60 s since the epoch, so every
machine agrees on them). Workers fire them: each worker's scheduler sleeps until the
next due tick of its queue and asks the store to fire what is due. The store makes
each tick's job with the idempotency key ``schedule:<name>:<tick time>`` in the
transaction that moves the schedule on, so a tick is one job however many workers ask.

Ticks missed while nothing ran (or the store was down) follow ``catchup``: only the
latest due tick can fire (never a burst of jobs for a backlog) — with ``"once"`` (the
default) it fires however late, with ``"skip"`` only if it is at most
``misfire_grace_s`` late; the older ones are dropped, and a ``schedule_skipped`` event
records each firing that dropped ticks.

These rules are the same on every backend; the backends only store the rows.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import JobError, ScheduleError, UnstorableError
from ..flow.policy import Backoff
from .models import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF,
    DEFAULT_QUEUE,
    JobSpec,
    backoff_from,
    backoff_to_json,
    text_problem,
)

CATCHUP = ("once", "skip")
DEFAULT_CATCHUP = "once"
DEFAULT_MISFIRE_GRACE_S = 5.0
MIN_EVERY_S = 1.0
MAX_NAME = 200
KEY_PREFIX = "schedule:"
_ONE_US = datetime.timedelta(microseconds=1)


@dataclass
class Schedule:
    """A repeatable job. ``next_at`` is its next tick (Unix seconds, set by the store);
    ``last_at`` and ``last_job_id`` the last tick fired and its job."""

    name: str
    flow: str
    inputs: dict[str, Any]
    queue: str = DEFAULT_QUEUE
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    catchup: str = DEFAULT_CATCHUP
    misfire_grace_s: float = DEFAULT_MISFIRE_GRACE_S
    max_attempts: int = DEFAULT_ATTEMPTS
    backoff: Backoff = DEFAULT_BACKOFF
    priority: int = 0
    timeout_s: float | None = None
    next_at: float = 0.0
    last_at: float | None = None
    last_job_id: str | None = None
    created_at: float = 0.0

    def __post_init__(self) -> None:
        for what, text in (("name", self.name), ("flow", self.flow), ("queue", self.queue)):
            if not isinstance(text, str) or not text:
                raise ScheduleError(f"schedule {what} must be a non-empty string", what)
            problem = text_problem(text)
            if problem is not None:
                raise ScheduleError(f"schedule {what}: {problem}", what)
        if len(self.name) > MAX_NAME:
            raise ScheduleError(f"schedule name must be at most {MAX_NAME} characters", "name")
        if (self.cron is None) == (self.every_s is None):
            raise ScheduleError(f"schedule {self.name!r}: give exactly one of cron= and every_s=")
        if self.every_s is not None and not (math.isfinite(self.every_s) and self.every_s >= MIN_EVERY_S):
            raise ScheduleError(
                f"schedule {self.name!r}: every_s must be a number >= {MIN_EVERY_S:g}", "every_s"
            )
        self._zone = _zone(self.name, self.tz)
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.datetime.now(self._zone))
            except (CronSimError, ValueError, TypeError) as e:
                why = f"bad cron expression {self.cron!r}: {e}"
                raise ScheduleError(f"schedule {self.name!r}: {why}", "cron") from None
        if self.catchup not in CATCHUP:
            raise ScheduleError(
                f"schedule {self.name!r}: catchup must be one of {', '.join(CATCHUP)}", "catchup"
            )
        if not (math.isfinite(self.misfire_grace_s) and self.misfire_grace_s >= 0):
            raise ScheduleError(f"schedule {self.name!r}: misfire_grace_s must be >= 0", "misfire_grace_s")
        # the job every tick makes: its checks (attempts, inputs, timeout) are the submit's
        # (an input a job cannot hold is the submit's UnstorableError, naming where it is)
        try:
            self.spec(0.0)
        except UnstorableError:
            raise
        except (JobError, ValueError) as e:
            raise ScheduleError(f"schedule {self.name!r}: {e}") from None

    # -- ticks ----------------------------------------------------------------------------

    def next_tick(self, after: float) -> float:
        """The first tick strictly after ``after``."""
        if self.every_s is not None:
            tick = float((math.floor(after / self.every_s) + 1) * self.every_s)
            while tick <= after:  # (float rounding)
                tick += self.every_s
            return tick
        assert self.cron is not None
        start = datetime.datetime.fromtimestamp(after, self._zone)
        return next(CronSim(self.cron, start)).timestamp()

    def latest_tick(self, at: float) -> float:
        """The last tick at or before ``at``."""
        if self.every_s is not None:
            tick = float(math.floor(at / self.every_s) * self.every_s)
            while tick > at:  # (float rounding)
                tick -= self.every_s
            return tick
        assert self.cron is not None
        start = datetime.datetime.fromtimestamp(at, self._zone) + _ONE_US
        return next(CronSim(self.cron, start, reverse=True)).timestamp()

    def due(self, now: float) -> tuple[float | None, float, bool]:
        """What firing at ``now`` does (``next_at <= now``): the tick to fire a job for
        (``None``: skipped by ``catchup="skip"``), the new ``next_at``, and whether ticks
        were dropped (older due ticks, or the skipped one)."""
        latest = max(self.latest_tick(now), self.next_at)
        dropped = latest > self.next_at
        fire: float | None = latest
        if self.catchup == "skip" and now - latest > self.misfire_grace_s:
            fire, dropped = None, True
        return fire, self.next_tick(now), dropped

    def same_timing(self, other: Schedule) -> bool:
        """Whether ``other`` ticks at the same times (then a re-add keeps ``next_at``)."""
        return (self.cron, self.every_s, self.tz) == (other.cron, other.every_s, other.tz)

    # -- jobs -----------------------------------------------------------------------------

    def key(self, tick: float) -> str:
        """The idempotency key of ``tick``'s job: one job per schedule and tick."""
        at = datetime.datetime.fromtimestamp(tick, datetime.UTC).isoformat(timespec="milliseconds")
        return f"{KEY_PREFIX}{self.name}:{at.replace('+00:00', 'Z')}"

    def spec(self, tick: float) -> JobSpec:
        return JobSpec(
            flow=self.flow,
            inputs=self.inputs,
            queue=self.queue,
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            priority=self.priority,
            idempotency_key=self.key(tick),
            timeout_s=self.timeout_s,
        )

    # -- rows -----------------------------------------------------------------------------

    def options_json(self) -> str:
        return json.dumps(
            {
                "max_attempts": self.max_attempts,
                "backoff": json.loads(backoff_to_json(self.backoff)),
                "priority": self.priority,
                "timeout_s": self.timeout_s,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """The shape of ``weirflow schedules list --json`` and ``/api/store/schedules``."""
        return {
            "name": self.name,
            "flow": self.flow,
            "inputs": self.inputs,
            "queue": self.queue,
            "cron": self.cron,
            "every_s": self.every_s,
            "tz": self.tz,
            "catchup": self.catchup,
            "misfire_grace_s": self.misfire_grace_s,
            "attempts": self.max_attempts,
            "backoff": json.loads(backoff_to_json(self.backoff)),
            "priority": self.priority,
            "timeout_s": self.timeout_s,
            "next_at": self.next_at,
            "last_at": self.last_at,
            "last_job_id": self.last_job_id,
            "created_at": self.created_at,
        }


#: the columns of ``wf_schedules``, in the order ``schedule_row`` and ``schedule_from_row`` use
SCHEDULE_COLUMNS = (
    "name",
    "flow",
    "inputs",
    "queue",
    "cron",
    "every_s",
    "tz",
    "catchup",
    "misfire_grace_s",
    "options",
    "next_at",
    "last_at",
    "last_job_id",
    "created_at",
)
SCHEDULE_SELECT = ", ".join(SCHEDULE_COLUMNS)


def schedule_row(s: Schedule) -> tuple[Any, ...]:
    return (
        s.name,
        s.flow,
        json.dumps(s.inputs),
        s.queue,
        s.cron,
        s.every_s,
        s.tz,
        s.catchup,
        s.misfire_grace_s,
        s.options_json(),
        s.next_at,
        s.last_at,
        s.last_job_id,
        s.created_at,
    )


def schedule_from_row(row: Any) -> Schedule:
    d = dict(zip(SCHEDULE_COLUMNS, row, strict=True))
    inputs = json.loads(d["inputs"]) if isinstance(d["inputs"], str | bytes) else d["inputs"]
    options = json.loads(d["options"]) if isinstance(d["options"], str | bytes) else d["options"]
    return Schedule(
        name=d["name"],
        flow=d["flow"],
        inputs=inputs,
        queue=d["queue"],
        cron=d["cron"],
        every_s=d["every_s"],
        tz=d["tz"],
        catchup=d["catchup"],
        misfire_grace_s=d["misfire_grace_s"],
        max_attempts=options["max_attempts"],
        backoff=backoff_from(options["backoff"]),
        priority=options["priority"],
        timeout_s=options["timeout_s"],
        next_at=d["next_at"],
        last_at=d["last_at"],
        last_job_id=d["last_job_id"],
        created_at=d["created_at"],
    )


@dataclass
class Fired:
    """What one ``Store.fire_schedules`` did: the jobs it made, and the queue's next due
    tick (``None``: the queue has no schedules)."""

    jobs: list[str]
    next_at: float | None


def added(new: Schedule, old: Schedule | None, now: float) -> Schedule:
    """``new`` as the store keeps it: a schedule re-added with the same timing keeps its
    ``next_at`` and last tick (an app that schedules at every start misses no tick);
    otherwise it first ticks after ``now``, and never at or before the last tick it fired
    (it keeps that tick): a process whose clock is behind the one that fired it does not
    move the schedule back to ticks already past."""
    if old is not None and new.same_timing(old):
        new.next_at, new.last_at, new.last_job_id, new.created_at = (
            old.next_at,
            old.last_at,
            old.last_job_id,
            old.created_at,
        )
    elif old is not None:
        new.last_at, new.last_job_id, new.created_at = old.last_at, old.last_job_id, old.created_at
        new.next_at = new.next_tick(now if old.last_at is None else max(now, old.last_at))
    else:
        new.next_at = new.next_tick(now)
        new.created_at = now
    return new


def _zone(name: str, tz: str) -> datetime.tzinfo:
    if not isinstance(tz, str) or not tz:
        raise ScheduleError(
            f"schedule {name!r}: tz must be a time zone name such as 'UTC' or 'Europe/Paris'", "tz"
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"schedule {name!r}: unknown time zone {tz!r}", "tz") from None
