"""A job's journal as the store holds it, decoded into ``LogJournal`` records."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import JobError
from ..runtime import records
from ..runtime.records import Record


def decoded(job_id: str, rows: Sequence[str]) -> list[Record]:
    """A job's journal ``rows`` as the store holds them, decoded into ``LogJournal`` records."""
    out: list[Record] = []
    for row in rows:
        for line in row.split("\n"):
            try:
                records.decode(line, out)
            except records.UnknownRecordError:  # not retried: the job fails with this
                raise JobError(
                    f"job {job_id}: its journal holds a record this weirflow cannot read "
                    f"({line[:60]}); was it written by a newer version?"
                ) from None
    return out
