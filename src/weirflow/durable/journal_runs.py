"""Runs of whole steps: the durable journal's ``[4, ...]`` and ``[5, ...]`` records.

Whole steps in a row of one routine of a job that are alike (one item taken from the
same slot, no state, nothing or one item emitted on the same event to the same slot, as
a chain's are) are kept as a ``StepRun`` (their numbers and what each emitted) while they
continue it, and written as one record for them all when anything else is recorded, the
run breaks, or a flush comes (``DurableJournal.step_completed`` decides; ``StepRun.line``
writes): the items of a run are encoded by one call, and nothing is formatted per step.
``weirflow.runtime.records`` decodes the two records into the ``start``, ``enq`` and
``done`` records of each step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..runtime.journal import Step


class StepRun:
    """Whole steps in a row of one routine of a job, alike: the same slot taken, the same
    event emitted to the same slot (``event`` ``None``: nothing emitted), numbered from
    ``next_seq - len(items)``; ``items`` holds what each emitted (``None`` if nothing):
    an int, str or float as it is (immutable), anything else as it was encoded at its
    emit (``orjson.Fragment``).

    ``step`` is the last step's ``Step`` object, for its identity only (never read): the
    runtime reuses one for the calls a routine makes in a row (``Journal.keeps_steps``),
    changing neither its routine nor its attempt nor the slot it takes from, so the same
    object again continues the run without those compared (``continued_by``)."""

    __slots__ = ("attempt", "consumed", "event", "items", "job_id", "next_seq", "routine", "slot", "step")

    def __init__(self, job_id: str, step: Step, slot: bytes, event: str | None, item: Any) -> None:
        self.job_id = job_id
        self.routine = step.routine
        self.attempt = step.attempt
        self.consumed = step.consumed[0][0]
        self.slot = slot  # the slot's path as JSON (``b""``: nothing emitted)
        self.event = event
        self.next_seq = step.seq + 1
        self.items = [item]
        self.step = step

    def continued_by(self, job_id: str, step: Step) -> bool:
        """Whether ``step`` (the next one by number, emitting as the run's do) is of the
        same routine of the same job, the same attempt, taking from the same slot; it is
        the run's last step from now on."""
        if (
            self.routine == step.routine
            and self.job_id == job_id
            and self.attempt == step.attempt
            and self.consumed == step.consumed[0][0]
        ):
            self.step = step
            return True
        return False

    def line(self, names: Mapping[str, bytes]) -> bytes:
        """The run as one record: ``[4, routine, attempt, first seq, slot taken, n]`` when
        its steps emitted nothing, else ``[5, routine, attempt, first seq, slot taken,
        slot sent to, event, [items]]`` (``names``: each name as JSON)."""
        n = len(self.items)
        head = b"%b,%d,%d,%b" % (names[self.routine], self.attempt, self.next_seq - n, names[self.consumed])
        if self.event is None:
            return b"[4,%b,%d]" % (head, n)
        # one encoder call for the run's items
        return b"[5,%b,%b,%b,%b]" % (head, self.slot, names[self.event], orjson.dumps(self.items))
