"""``DurableJournal``: a job's journal committed to the store in batches.

Each record (those of ``weirflow.runtime.replay.LogJournal``) is serialised to JSON at
once (so later mutation of an item or of state cannot change what was recorded)
and buffered; a flush writes the buffer in one transaction when it reaches
``max_batch`` records or ``max_delay_s`` after its first record; whoever reports
a job's outcome awaits ``flush()`` first (the worker does). After a crash the store holds a prefix of
the records, and ``restore_from`` resumes the job from its last committed step.

Items and state must be JSON-serialisable: an emit or send of anything else
raises ``StoreError`` in the emitter (nothing is enqueued), and a routine whose
state cannot be serialised fails the job with a clear error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import structlog

from ..errors import StoreError
from ..runtime.journal import Journal, Step
from ..runtime.replay import Record
from ..runtime.results import JobStatus

if TYPE_CHECKING:
    from ..runtime.job import Job
    from ..runtime.results import DeadLetter, JobResult

log = structlog.get_logger("weirflow.durable")

DEFAULT_MAX_BATCH = 2000
DEFAULT_MAX_DELAY_S = 0.02
RETRY_S = 1.0


class _Encoded(dict[str, bytes]):
    """Names encoded as JSON strings, on first use."""

    def __missing__(self, name: str) -> bytes:
        encoded = self[name] = orjson.dumps(name)
        return encoded


class JournalStore(Protocol):
    """What the journal needs of a store."""

    async def append_journal(self, rows: Sequence[tuple[str, str]]) -> None:
        """Append ``(job_id, record_json)`` rows, in order, in one transaction."""

    async def read_journal(self, job_id: str) -> list[str]:
        """Every record of ``job_id`` in the order appended."""

    async def clear_journal(self, job_id: str) -> None:
        """Forget ``job_id``'s records (a retry from the start)."""


def _dumps(value: Any, what: str) -> bytes:
    """``value`` as JSON (orjson: strict about key types; NaN becomes null)."""
    try:
        return orjson.dumps(value)
    except TypeError as e:
        raise StoreError(f"{what} is not JSON-serialisable, as durable jobs need: {e}") from None


class DurableJournal(Journal):
    """Buffers each job's records and commits them in batches to a ``JournalStore``.

    ``drop_completed=False`` writes a completed job's last records too (to keep the
    whole journal of every job, or to measure the full cost of committing it).

    The records are those of ``LogJournal`` (``restore_from`` reads either), written
    straight to JSON bytes: an item is encoded once, when ``check`` accepts it.
    """

    def __init__(
        self,
        store: JournalStore,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        drop_completed: bool = True,
    ) -> None:
        self.store = store
        self.drop_completed = drop_completed
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._buffer: list[tuple[str, bytes]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._checked: tuple[Any, bytes] | None = None  # the last item check() encoded
        self._names = _Encoded()  # routine, slot and event names, as JSON
        self.error: BaseException | None = None
        self.committed = 0  # records written to the store
        self.dropped = 0  # records of completed jobs that never needed writing

    # -- the runtime's calls ------------------------------------------------------------

    def check(self, item: Any) -> None:
        """Refuse an item a durable job cannot record (called before it is enqueued)."""
        self._checked = (item, _dumps(item, "item"))

    def _item(self, item: Any) -> bytes:
        checked = self._checked
        if checked is not None and checked[0] is item:
            return checked[1]
        return _dumps(item, "item")

    def job_restored(self, job: Job) -> None:
        self._add(job, b'{"t":"resume"}')

    def job_ending(self, job: Job, status: JobStatus, error: str | None) -> None:
        self._add(job, orjson.dumps({"t": "end", "status": status.value, "error": error}))

    def enqueued(self, job: Job, slot: str, item: Any, origin: Step | str | None) -> None:
        if isinstance(origin, Step):
            by = b"[%b,%d]" % (self._names[origin.routine], origin.seq)
        else:
            by = orjson.dumps(origin)
        self._add(job, b'{"t":"enq","slot":%b,"item":%b,"by":%b}' % (self._names[slot], self._item(item), by))

    def step_started(self, job: Job, step: Step) -> None:
        taken = step.consumed
        names = self._names
        consumed = names[taken[0][0]] if len(taken) == 1 else b",".join(names[name] for name, _ in taken)
        self._add(
            job,
            b'{"t":"start","routine":%b,"seq":%d,"attempt":%d,"consumed":[%b]}'
            % (self._names[step.routine], step.seq, step.attempt, consumed),
        )

    def step_completed(self, job: Job, step: Step) -> None:
        try:
            state = orjson.dumps(step.state) if step.state else b"{}"
            out = step.emitted
            if not out:
                emitted = b""
            elif len(out) == 1:
                emitted = b"[%b,%b]" % (self._names[out[0][0]], self._item(out[0][1]))
            else:
                emitted = b",".join(b"[%b,%b]" % (self._names[ev], self._item(item)) for ev, item in out)
        except (TypeError, StoreError) as e:
            job._fail(f"routine {step.routine!r}: state is not JSON-serialisable, as durable jobs need: {e}")
            return
        self._add(
            job,
            b'{"t":"done","routine":%b,"seq":%d,"attempt":%d,"status":%b,"final":%b,"on_end":%b,'
            b'"state":%b,"emitted":[%b],"error":%b}'
            % (
                self._names[step.routine],
                step.seq,
                step.attempt,
                self._names[step.status],
                b"true" if step.final else b"false",
                b"true" if step.on_end else b"false",
                state,
                emitted,
                orjson.dumps(step.error),
            ),
        )

    def dead_lettered(self, job: Job, letter: DeadLetter, *, from_queue: bool) -> None:
        try:
            item = self._item(letter.item)
        except StoreError:
            item = orjson.dumps(repr(letter.item))  # a record of it, though not the object
        self._add(
            job,
            b'{"t":"dl","slot":%b,"item":%b,"reason":%b,"error":%b,"at":%b,"queued":%b}'
            % (
                orjson.dumps(letter.slot),
                item,
                orjson.dumps(letter.reason),
                orjson.dumps(letter.error),
                orjson.dumps(letter.at),
                b"true" if from_queue else b"false",
            ),
        )

    def _add(self, job: Job, text: bytes) -> None:
        buffer = self._buffer
        buffer.append((job.id, text))
        if self._timer is None:  # the first record since the last flush started
            self._timer = job.loop.call_later(self.max_delay_s, self._flush_soon, True)
        elif len(buffer) == self.max_batch:
            self._flush_soon(now=True)

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
        """Commit everything buffered so far: one row per job per batch, its records
        newline-separated (JSON text has no raw newlines), in one transaction."""
        async with self._lock:
            while self._buffer:
                batch, self._buffer = self._buffer, []
                rows: dict[str, list[bytes]] = {}
                for job_id, text in batch:
                    rows.setdefault(job_id, []).append(text)
                try:
                    await self.store.append_journal(
                        [(job_id, b"\n".join(texts).decode()) for job_id, texts in rows.items()]
                    )
                except Exception as e:  # kept for the owner of the job to see; re-raised
                    self.error = e
                    self._buffer[:0] = batch  # keep them: the next flush tries again
                    raise
                self.committed += len(batch)

    async def job_finished(self, job: Job, result: JobResult) -> None:
        """A completed job's records not yet committed are dropped: once its outcome is
        stored nobody replays them (short jobs then write no journal at all; should the
        process die before the outcome is stored, the job resumes from its last committed
        step). Other jobs' last records go with the next batch: whoever reports an
        outcome awaits ``flush()`` first (the worker does), so many jobs share one
        transaction."""
        if result.status is JobStatus.COMPLETED and self.drop_completed:
            kept = [row for row in self._buffer if row[0] != job.id]
            self.dropped += len(self._buffer) - len(kept)
            self._buffer = kept
        elif self._buffer and self._timer is None:
            self._flush_soon(now=True)

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
        return [
            orjson.loads(line) for row in await self.store.read_journal(job_id) for line in row.split("\n")
        ]
