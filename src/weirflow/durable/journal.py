"""``DurableJournal``: a job's journal committed to the store in batches.

Each record of ``weirflow.runtime.replay.LogJournal`` is serialised to JSON at
once (so later mutation of an item or of state cannot change what was recorded)
and buffered; a flush writes the buffer in one transaction when it reaches
``max_batch`` records or ``max_delay_s`` after its first record, and always
before the job is reported finished. After a crash the store holds a prefix of
the records, and ``restore_from`` resumes the job from its last committed step.

Items and state must be JSON-serialisable: an emit or send of anything else
raises ``StoreError`` in the emitter (nothing is enqueued), and a routine whose
state cannot be serialised fails the job with a clear error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ..errors import StoreError
from ..runtime.replay import LogJournal, Record

if TYPE_CHECKING:
    from ..runtime.job import Job
    from ..runtime.results import JobResult

log = structlog.get_logger("weirflow.durable")

DEFAULT_MAX_BATCH = 2000
DEFAULT_MAX_DELAY_S = 0.02
RETRY_S = 1.0


class JournalStore(Protocol):
    """What the journal needs of a store."""

    async def append_journal(self, rows: Sequence[tuple[str, str]]) -> None:
        """Append ``(job_id, record_json)`` rows, in order, in one transaction."""

    async def read_journal(self, job_id: str) -> list[str]:
        """Every record of ``job_id`` in the order appended."""

    async def clear_journal(self, job_id: str) -> None:
        """Forget ``job_id``'s records (a retry from the start)."""


def encode(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{what} is not JSON-serialisable, as durable jobs need: {e}") from None


class DurableJournal(LogJournal):
    """Buffers each job's records and commits them in batches to a ``JournalStore``."""

    def __init__(
        self,
        store: JournalStore,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
    ) -> None:
        super().__init__()
        self.store = store
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._buffer: list[tuple[str, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.error: BaseException | None = None
        self.committed = 0

    def check(self, item: Any) -> None:
        """Refuse an item a durable job cannot record (called before it is enqueued)."""
        encode(item, "item")

    def add(self, job: Job, record: Record) -> None:
        try:
            text = encode(record, "state" if record["t"] == "done" else "item")
        except StoreError as e:
            if record["t"] == "done":
                job._fail(f"routine {record['routine']!r}: {e}")
                return
            raise
        self._buffer.append((job.id, text))
        if len(self._buffer) >= self.max_batch:
            self._flush_soon(now=True)
        elif self._timer is None:
            self._timer = job.loop.call_later(self.max_delay_s, self._flush_soon, True)

    def _flush_soon(self, now: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        except Exception as e:  # noqa: BLE001 - the store may be restarting: keep the records, try again
            log.warning("journal_not_committed", error=f"{type(e).__name__}: {e}", buffered=len(self._buffer))
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(RETRY_S, self._flush_soon, True)

    async def flush(self) -> None:
        """Commit everything buffered so far."""
        async with self._lock:
            while self._buffer:
                batch, self._buffer = self._buffer, []
                try:
                    await self.store.append_journal(batch)
                except Exception as e:  # kept for the owner of the job to see; re-raised
                    self.error = e
                    self._buffer[:0] = batch  # keep them: the next flush tries again
                    raise
                self.committed += len(batch)

    async def job_finished(self, job: Job, result: JobResult) -> None:
        """Commit the job's last records (a store that fails now is retried in the background:
        the job's outcome does not wait for its journal)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            await self.flush()
        except Exception as e:  # noqa: BLE001 - see the docstring
            log.warning("journal_not_committed", job=job.id, error=f"{type(e).__name__}: {e}")
            self._flush_soon(True)

    async def close(self) -> None:
        """Commit what is buffered and stop the background flushes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self.flush()

    async def records_of(self, job_id: str) -> list[Record]:
        """What the store committed for ``job_id``, decoded."""
        return [json.loads(text) for text in await self.store.read_journal(job_id)]
