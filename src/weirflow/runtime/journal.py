"""Journal: the runtime's record of a job, for durability.

The runtime reports every enqueue and every completed step (a handler call:
what it consumed, what it emitted, the routine's state after it) to the
engine's journal. ``Journal`` itself does nothing and the runtime skips it
entirely, so in-memory jobs pay nothing; a durable journal writes the records
to a store in batched transactions so a crashed job can resume from its last
committed step. Methods are awaited on the event loop: a journal that commits
in batches awaits the batch that holds the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import Job
    from .results import DeadLetter, JobResult


@dataclass
class Step:
    """One handler call that completed (or gave up): the unit a durable job resumes from."""

    routine: str
    seq: int
    attempt: int
    consumed: list[tuple[str, Any]]
    emitted: list[tuple[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    status: str = "completed"
    error: str | None = None
    started_at: float = 0.0
    completed_at: float = 0.0


class Journal:
    """Base class of journals; every method is a documented no-op."""

    async def job_started(self, job: Job) -> None:
        """The job was created and is about to run."""

    async def enqueued(self, job: Job, slot: str, item: Any) -> None:
        """``item`` entered ``slot`` (counted in ``enqueued``)."""

    async def step_completed(self, job: Job, step: Step) -> None:
        """A handler call (or ``on_end``, with nothing consumed) finished; ``step.status``
        is ``completed`` or ``failed``. ``step.state`` is a shallow copy of the routine's
        state whose values are live: serialise it before the first await."""

    def dead_lettered(self, job: Job, letter: DeadLetter) -> None:
        """An item was dead-lettered (called synchronously: buffer it, commit with the next batch)."""

    async def job_finished(self, job: Job, result: JobResult) -> None:
        """The job reached a final status."""


def is_active(journal: Journal | None) -> bool:
    """Whether the runtime must report to ``journal`` (it overrides something)."""
    if journal is None:
        return False
    kind = type(journal)
    return any(
        getattr(kind, name) is not getattr(Journal, name)
        for name in ("job_started", "enqueued", "step_completed", "dead_lettered", "job_finished")
    )
