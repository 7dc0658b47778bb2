"""A job's dead letters: every one counted and reported, the first ``max_kept`` kept.

Each dead letter goes to the hooks' ``on_dead_letter`` and to the journal as it
is made; the job keeps the first ``max_kept`` of them (for ``job.dead_letters``
and ``result.dead_letters``) and counts all (``result.dead_letter_count``), so a
cancelled job with a million unfed inputs holds a bounded list. With no hook
watching dead letters and no journal, letters past the cap are only counted:
nobody could see them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .results import DeadLetter

if TYPE_CHECKING:
    from .job import Job

DEFAULT_MAX_DEAD_LETTERS = 10_000
"""Dead letters a job keeps in memory (``Engine(max_dead_letters=...)``); the rest are counted."""


class DeadLetterLog:
    """Records the dead letters of one job (the only place that makes ``DeadLetter``s)."""

    __slots__ = ("by_reason", "count", "job", "kept", "max_kept", "refusing_input")

    def release(self) -> None:
        """The job was released (``Job.release``): drop the link back to it (what was kept
        and counted stays readable)."""
        del self.job

    def __init__(self, job: Job, max_kept: int) -> None:
        self.job = job
        self.max_kept = max_kept
        self.kept: list[DeadLetter] = []
        self.count = 0
        self.by_reason: dict[str, int] = {}
        # set while the journal records a starting input that its slot refused: the
        # journal's ``dead_lettered`` keeps its signature (subclasses), and reads this
        self.refusing_input = False

    def restore(self, letters: Sequence[DeadLetter]) -> None:
        """Letters a resumed job had already recorded (from its journal): kept and counted,
        not reported again."""
        for letter in letters:
            self.count += 1
            self.by_reason[letter.reason] = self.by_reason.get(letter.reason, 0) + 1
            if len(self.kept) < self.max_kept:
                self.kept.append(letter)

    def add(
        self,
        slot: str,
        item: Any,
        reason: str,
        error: str | None,
        *,
        from_queue: bool = False,
        of_input: bool = False,
    ) -> None:
        """Record one dead letter: counted, kept while under the cap, and reported.
        ``of_input``: a starting input its slot refused (``refusing_input`` says so to the
        journal while it records the letter)."""
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        job = self.job
        hooks = job.hook_set.dead_letter
        journal = job.journal
        kept = self.kept
        if len(kept) >= self.max_kept and not hooks and journal is None:
            return
        letter = DeadLetter(slot=slot, item=item, reason=reason, error=error, at=time.time())
        if len(kept) < self.max_kept:
            kept.append(letter)
        for hook in hooks:
            try:
                hook(job, letter)
            except Exception as e:  # noqa: BLE001 - a hook's failure is reported, the letter stands
                job.hook_failed(hook, "on_dead_letter", e)
        if journal is not None:
            self.refusing_input = of_input
            try:
                journal.dead_lettered(job, letter, from_queue=from_queue)
            finally:
                self.refusing_input = False

    def add_unqueued(self, slot: str, items: Sequence[Any], reason: str, error: str | None) -> None:
        """Dead-letter ``items`` that never entered ``slot`` (inputs not fed when the job
        ended). Each is counted; a ``DeadLetter`` is made only for those kept or reported."""
        if not items:
            return
        job = self.job
        if job.hook_set.dead_letter or job.journal is not None:
            for item in items:
                self.add(slot, item, reason, error)
            return
        room = self.max_kept - len(self.kept)
        if room > 0:
            at = time.time()
            self.kept.extend(
                DeadLetter(slot=slot, item=item, reason=reason, error=error, at=at) for item in items[:room]
            )
        self.count += len(items)
        self.by_reason[reason] = self.by_reason.get(reason, 0) + len(items)
