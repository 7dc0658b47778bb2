"""Observing a job: its slots' statistics, the items waiting in a slot, a routine's
state and the job's stats — answered from the live queues, or from the result once the
job was released (``Job.release``: a finished job's queues were drained).

``Observing`` is a base class of ``Job``, kept here because it is one concept of its own."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import JobFinishedError, UnknownSlotError
from .results import JobResult, JobStats, QueueStats, RoutineStats, made_from

if TYPE_CHECKING:
    from ..flow.graph import Flow
    from .inputs import Inputs
    from .runner import RoutineRunner
    from .slot_queue import SlotQueue


class Observing:
    """What a ``Job`` answers about itself while it runs and after."""

    # provided by Job
    id: str
    flow: Flow
    released: bool
    result: JobResult | None
    paused: bool
    runners: dict[str, RoutineRunner]
    inputs: Inputs
    _queues: dict[str, SlotQueue]
    _ended: float | None
    _started: float

    if TYPE_CHECKING:

        def queue(self, path: str) -> SlotQueue: ...
        def runner(self, routine: str) -> RoutineRunner: ...

    def queues(self) -> dict[str, QueueStats]:
        """Every slot's statistics now."""
        if self.released:
            assert self.result is not None
            return dict(self.result.stats.slots)
        paused = self.paused
        return {path: q.stats(paused or q.runner.paused) for path, q in self._queues.items()}

    def queue_dicts(self) -> dict[str, dict[str, Any]]:
        """``queues()`` as plain dicts (the fields of ``QueueStats``), cheaper to build: for
        answers that are encoded straight to JSON."""
        if self.released:
            return {path: s.to_dict() for path, s in self.queues().items()}
        paused = self.paused
        return {path: q.stats_dict(paused or q.runner.paused) for path, q in self._queues.items()}

    def queue_stats(self, slot: str) -> QueueStats:
        """One slot's statistics now (``UnknownSlotError`` for a slot the flow lacks)."""
        if self.released:
            return self._released_slot(slot)
        q = self.queue(slot)
        return q.stats(self.paused or q.runner.paused)

    def queued_items(self, slot: str, limit: int = 10) -> list[Any]:
        """The first ``limit`` items waiting in ``slot``."""
        if self.released:  # a finished job's queues were drained (dead-lettered)
            self._released_slot(slot)
            return []
        q = self.queue(slot)
        return [item for _, item in zip(range(limit), q.items, strict=False)]

    def _released_slot(self, slot: str) -> QueueStats:
        assert self.result is not None
        slots = self.result.stats.slots
        if slot not in slots:
            known = ", ".join(slots)
            raise UnknownSlotError(f"flow {self.flow.name!r} has no slot {slot!r} (slots: {known})")
        return slots[slot]

    def routine_state(self, routine: str) -> dict[str, Any]:
        """``routine``'s ``ctx.state`` (the live dict). A released job (``Job.release``) no
        longer holds its routines' state: ``JobFinishedError`` for a routine of the flow."""
        if self.released and routine in self.flow.routines:
            raise JobFinishedError(f"job {self.id} was released: the state of {routine!r} is gone")
        return self.runner(routine).state

    @property
    def stats(self) -> JobStats:
        if self.released:
            assert self.result is not None
            return self.result.stats
        end = self._ended if self._ended is not None else time.monotonic()
        routines = {}
        for name, r in self.runners.items():
            routines[name] = made_from(
                RoutineStats,
                {
                    "routine": name,
                    "calls": r.calls,
                    "failures": r.failures,
                    "retries": r.retries,
                    "busy_s": r.busy_s,
                    "active": r.running_calls(),
                },
            )
        return made_from(
            JobStats,
            {
                "slots": self.queues(),
                "routines": routines,
                "duration_s": end - self._started,
                "inputs": self.inputs.stats(),
                "entry_slots": tuple(self.inputs.slots),
            },
        )
