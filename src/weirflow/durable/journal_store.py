"""``JournalStore``: what the durable journal (``weirflow.durable.journal``) needs of a
store (every store of ``weirflow.durable`` is one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class JournalStore(Protocol):
    """What the journal needs of a store."""

    async def append_journal(
        self,
        rows: Sequence[tuple[str, str]],
        *,
        tokens: Mapping[str, int] | None = None,
        batches: Mapping[str, int] | None = None,
        resent: bool = False,
    ) -> list[str]:
        """Append ``(job_id, record_json)`` rows, in order, in one transaction; with
        ``tokens``, only the rows of jobs still running under their token; with
        ``batches`` (job id: its batch number within the claim) the rows carry it, and
        ``resent`` (the batch's append failed before) skips a job's batch the store holds
        already. Returns the job ids refused."""

    async def read_journal(self, job_id: str) -> list[str]:
        """Every record of ``job_id`` in the order appended."""

    async def clear_journal(self, job_id: str, *, token: int | None = None) -> None:
        """Forget ``job_id``'s records (a retry from the start)."""
