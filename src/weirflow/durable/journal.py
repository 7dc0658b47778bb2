"""``DurableJournal``: a job's journal committed to the store in batches.

Each record (those of ``weirflow.runtime.replay.LogJournal``) is serialised to JSON at
once (so later mutation of an item or of state cannot change what was recorded)
and buffered; a flush writes the buffer in one transaction when it reaches
``max_batch`` records or ``max_delay_s`` after its first record; whoever reports
a job's outcome awaits ``flush()`` first (the worker does). After a crash the store holds a prefix of
the records, and ``restore_from`` resumes the job from its last committed step.

Items and state must be values ``weirflow.storable`` accepts (JSON that comes back
exactly): an emit or send of anything else raises ``UnstorableError`` (a
``StoreError``) in the emitter, naming where the problem is (nothing is enqueued);
a routine whose state cannot be stored, or an input that cannot (a job written to
the store before this check), fails the job with that message, so that what is
committed can always be replayed.

What the store holds: one line of JSON per record, in the text form of
``weirflow.runtime.records`` (the schema and its codec), a step written as one
compact record where nothing else happened between its start and its end, and whole
steps in a row of a routine, alike, as one record for them all (journals written
before those runs still read and resume; a version before them refuses one that
holds a run, with a ``JobError``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from ..errors import StoreRefusedError, UnstorableError
from ..runtime import records
from ..runtime.journal import INPUT, Journal, Step
from ..runtime.records import Codec, Record
from ..runtime.results import JobStatus
from ..storable import INT_END, INT_MIN
from .journal_decode import decoded as decoded
from .journal_runs import StepRun
from .journal_store import JournalStore

if TYPE_CHECKING:
    from ..runtime.job import Job
    from ..runtime.results import DeadLetter, JobResult

log = structlog.get_logger("weirflow.durable")
_SCALARS = frozenset({int, str, float, bool, type(None)})  # (never change after their emit)
_END: tuple[Any, ...] = (JobStatus.COMPLETED, "completed", True, None, {}, False)  # (a plain one)

DEFAULT_MAX_BATCH = 2000
DEFAULT_MAX_DELAY_S = 0.02
RETRY_S = 1.0
#: full batches buffered behind the one being committed before routines wait for it
LAG_BATCHES = 4


class DurableJournal(Journal):
    """Buffers each job's records and commits them in batches to a ``JournalStore``.

    ``drop_completed=False`` writes a completed job's last records too (to keep the
    whole journal of every job, or to measure the full cost of committing it).

    Fencing (``fenced=True``, as a worker makes it): the worker calls ``begin(job_id,
    token)`` for each job it claimed and ``forget(job_id)`` when it is done with it;
    only the records of jobs begun and not forgotten are written, every batch carries
    their tokens, the store writes a job's rows only while the job runs under its
    token, and ``on_lost(job_id)`` hears of each job refused (taken over): its
    records, those buffered and any made later, are dropped.

    The records are those of ``LogJournal`` (``restore_from`` reads either), written
    straight to JSON bytes: an item is encoded once, when ``check`` accepts it.

    A step's records are folded into one where nothing else happened between them:
    a started step is held back (``_pending``) with what it enqueued, and when it
    completes before any other record is made and before the next flush, one
    record (``[3, ...]``) stands for its ``start``, ``enq`` and ``done`` records
    (``records_of`` expands it again). Any other record, a flush, or the next
    step's start writes the held-back ``start`` and ``enq`` records first, in their
    place, so what is committed is still a prefix of the job's records in causal
    order, and a step still running at a flush has its ``start`` committed.

    Whole steps in a row of one routine that are alike go one step further: they are kept
    as a run and written as one record (``journal_runs.StepRun``).
    """

    keeps_steps = False  # (every record is encoded or copied when it is made)
    reads_times = False  # (no record holds a time)

    def __init__(
        self,
        store: JournalStore,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        drop_completed: bool = True,
        fenced: bool = False,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.on_lost = on_lost
        self._tokens: dict[str, int] | None = {} if fenced else None  # job id -> token
        self._batch_no: dict[str, int] = {}  # job id -> its last batch number in this claim
        # the batch whose append failed, as it was sent (its rows, their job's token and
        # batch number), and the records it holds: sent again, first, by the next flush
        self._unsent: tuple[dict[str, str], dict[str, tuple[int, int]], int] | None = None
        self._resending = False  # ``_unsent`` was sent before (its append failed)
        self.drop_completed = drop_completed
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        # what is buffered: each job's records in order (rows of one job, not a list of
        # pairs: no object per record, and a job's end drops its own at once), their count,
        # and the last job's list (records come in runs of one job)
        self._rows: dict[str, list[bytes]] = {}
        self._count = 0
        self._last_id = ""
        self._last: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._checked: tuple[Any, bytes] | None = None  # the last item check() encoded
        self._codec = Codec()
        self._run: StepRun | None = None  # the whole steps in a row not yet written as one line
        # by job, how many more records its buffered lines stand for than there are lines
        # (a run's line stands for each of its steps): what a job's end drops
        self._in_runs: dict[str, int] = {}
        # the step whose start is held back, its job, and its enqueues so far:
        # (slot as JSON, index in step.emitted, item as JSON)
        self._pending: Step | None = None
        self._pending_job = ""
        self._pending_enq: list[tuple[bytes, int, bytes | int]] = []  # (an int item as it is)
        self.error: BaseException | None = None
        self._unmade: dict[str, int] = {}  # by job: records not made (step_completed_ending)
        self.committed = 0  # records written to the store
        self.dropped = 0  # records of completed jobs that never needed writing

    # -- fencing ----------------------------------------------------------------------------

    def begin(self, job_id: str, token: int) -> None:
        """``job_id``'s records are written under the fencing token ``token`` (its claim)."""
        if self._tokens is None:
            self._tokens = {}
        # what is buffered for ``job_id`` now is an earlier run's (this one has not started):
        # never written under this run's token (after its from-start clear, say)
        self._drop(job_id)
        self._tokens[job_id] = token
        self._batch_no[job_id] = 0

    def forget(self, job_id: str) -> None:
        """The worker is done with ``job_id``: nothing more of it is written (records that
        a handler still running makes from now on are dropped)."""
        if self._tokens is not None:
            self._tokens.pop(job_id, None)
        self._batch_no.pop(job_id, None)
        self._drop(job_id)

    def _drop(self, job_id: str) -> int:
        """Drop the records buffered for ``job_id``; how many there were."""
        n = 0
        if self._pending is not None and self._pending_job == job_id:
            self._pending = None
            self._pending_enq = []
        run = self._run
        if run is not None and run.job_id == job_id:
            self._run = None
            n += len(run.items)
        rows = self._rows.pop(job_id, None)
        if rows is not None:
            n += len(rows) + self._in_runs.pop(job_id, 0)
            if self._last_id == job_id:
                self._last_id, self._last = "", []
        self._count -= n
        return n

    def _lose(self, job_ids: list[str], sent: Mapping[str, int] | None) -> None:
        """The store refused ``job_ids``' records sent under the tokens ``sent``: those runs
        are lost (not a run of the job begun here since: its token is another)."""
        for job_id in job_ids:
            if sent is not None and self._tokens is not None and self._tokens.get(job_id) != sent.get(job_id):
                continue  # (the refusal is for an earlier run's records)
            self.forget(job_id)
            if self.on_lost is not None:
                self.on_lost(job_id)

    # -- the runtime's calls ------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """How many records wait to be committed (the step held back not counted)."""
        return self._count

    def check(self, item: Any) -> None:
        """Refuse an item a durable job cannot record (called before it is enqueued)."""
        if type(item) is int and INT_MIN <= item < INT_END:
            return  # (always recordable: written where it is recorded, ``enqueued``)
        self._checked = (item, records.dumps(item, "item"))

    def _item(self, item: Any) -> bytes:
        checked = self._checked
        if checked is not None and checked[0] is item:
            return checked[1]
        return records.dumps(item, "item")

    def job_restored(self, job: Job) -> None:
        self._add(job, records.RESUME_LINE)

    def job_ending(self, job: Job, status: JobStatus, error: str | None) -> None:
        self._add(job, Codec.end(status, error))

    def enqueued(self, job: Job, slot: str, item: Any, origin: Step | str | None) -> None:
        if origin is self._pending and origin is not None:  # (first: every emit of a chain's)
            k = origin.emit_at
            if k < 0:
                k = origin.position(item)
            emitted = origin.emitted
            if emitted and emitted[k][1] is item:  # what it emitted (not a hook's): held back with it
                # (an int as it is: written as ``b"%d"`` when needed; the rest as ``check`` encoded it)
                if type(item) is int and INT_MIN <= item < INT_END:
                    self._pending_enq.append((self._codec.names[slot], k, item))
                    return
                try:
                    encoded = self._item(item)
                except UnstorableError as e:  # (changed since its emit's check)
                    job.fail(f"the durable journal cannot record an item of {slot}: {e}")
                    return
                self._pending_enq.append((self._codec.names[slot], k, encoded))
                return
        if type(item) is int and INT_MIN <= item < INT_END:
            text = b"%d" % item
        else:
            try:
                text = self._item(item)
            except UnstorableError as e:  # not checked at the door (an input stored before it was)
                job.fail(f"the durable journal cannot record an item of {slot}: {e}")
                return
        codec = self._codec
        self._add(job, codec.enq(codec.names[slot], text, codec.origin(origin, item)))

    def emit_recorded(self, job: Job, slot: str, item: Any, step: Step) -> bool:
        """``check`` and ``enqueued`` in one (``Journal.emit_recorded``): ``item`` is the last
        of ``step.emitted``; an emit of the step held back is held back with it."""
        k = len(step.emitted) - 1
        if type(item) is int and INT_MIN <= item < INT_END:
            if step is self._pending:
                self._pending_enq.append((self._codec.names[slot], k, item))
                return True
            text = b"%d" % item
        else:
            text = records.dumps(item, "item")  # (raises UnstorableError: nothing recorded)
            self._checked = (item, text)
            if step is self._pending:
                self._pending_enq.append((self._codec.names[slot], k, text))
                return True
        codec = self._codec
        names = codec.names
        self._add(job, codec.enq(names[slot], text, codec.emitted_by(names[step.routine], step.seq, k)))
        return True

    def inputs_enqueued(self, job: Job, slot: str, items: Sequence[Any]) -> bool:
        """The ``enq`` records of starting inputs, made in one pass (ints as they are, the
        rest encoded, an input that cannot be recorded: ``False``, nothing recorded, so
        that ``enqueued`` fails the job on it in its place)."""
        if self._pending is not None:
            self._release()
        if self._run is not None:
            self._seal()
        codec = self._codec
        head = b"[0,%b," % codec.names[slot]
        tail = b",%b]" % codec.names[INPUT]
        lines: list[bytes] = []
        for item in items:
            if type(item) is int and INT_MIN <= item < INT_END:
                lines.append(b"%b%d%b" % (head, item, tail))
            else:
                try:
                    encoded = records.dumps(item, "item")
                except UnstorableError:
                    return False
                lines.append(b"%b%b%b" % (head, encoded, tail))
        self._rows_of(job.id).extend(lines)
        self._count += len(lines)
        if self._count >= self.max_batch:
            self._full()
        elif self._timer is None:
            self._timer = job.loop.call_later(self.max_delay_s, self._flush_soon, True)
        return True

    def step_started(self, job: Job, step: Step) -> None:
        if self._pending is not None:
            self._release()
        self._pending = step  # (``_pending_enq`` is empty: it is whenever nothing is held back)
        self._pending_job = job.id
        if self._timer is None:  # a flush commits the start of a step still running then
            self._timer = job.loop.call_later(self.max_delay_s, self._flush_soon, True)

    def _release(self) -> None:
        """Write the held-back step's ``start`` and ``enq`` records, in their place."""
        step = self._pending
        assert step is not None
        if self._run is not None:  # (it ran before the held-back step started)
            self._seal()
        self._pending = None
        job_id = self._pending_job
        codec = self._codec
        lines = [codec.start(codec.head(step))]
        routine = codec.names[step.routine]
        for slot, k, item in self._pending_enq:
            encoded = b"%d" % item if type(item) is int else item
            assert type(encoded) is bytes
            lines.append(codec.enq(slot, encoded, codec.emitted_by(routine, step.seq, k)))
        self._pending_enq = []
        self._rows_of(job_id).extend(lines)
        self._count += len(lines)

    def step_completed(self, job: Job, step: Step) -> None:
        if (
            step is self._pending  # nothing between its start and now: one record
            and not step.state
            and step.final
            and step.status == "completed"
            and step.error is None
            and not step.on_end
            and len(step.consumed) == 1
            and self.call_completed(job, step)
        ):
            return
        self._step_line(job, step, self._pending_enq if step is self._pending else None)

    def step_completed_ending(self, job: Job, step: Step, status: JobStatus) -> None:
        """Not made (``job_finished_now`` drops them in this frame), unless that could fail the
        job: a state, an emitted item (not a scalar) other than the one ``check`` encoded last."""
        out, checked = step.emitted, self._checked
        one = len(out) == 1 and (type(out[0][1]) in _SCALARS or (checked and checked[0] is out[0][1]))
        plain = (status, step.status, step.final, step.error, step.state, step.on_end) == _END
        if (one or not out) and plain and self.drop_completed:
            self._unmade[job.id] = 2  # (to be dropped: only a completed job's end comes here)
            return
        self.step_completed(job, step)
        if not job.finished:  # (``job.fail`` told the end: a record it could not make)
            self.job_ending(job, status, None)

    def call_completed(self, job: Job, step: Step) -> bool:
        """A whole step that took one item, emitted at most one (to one slot, its first
        position) and has no state, held back since its start: it joins the open run of
        such steps when it continues it, else opens a new one (the open one written first)
        (one function: every step of a chain's). ``False`` for any other step (nothing
        recorded: ``step_completed`` writes it as a line of its own)."""
        if step is not self._pending:
            return False
        sent = self._pending_enq
        value: Any = None  # (what a run keeps of its emit; no ``cast``: a call per step)
        if not sent:
            if step.emitted:  # (not recorded: dropped by a slot's policy)
                return False
            slot, event = b"", None
        else:
            slot, k, kept = sent[0]
            if k or len(sent) + len(step.emitted) != 2:  # (not a run's: one enqueue of one emit)
                return False
            event = step.emitted[0][0]
            if type(kept) is int:  # (the item itself: ``enqueued`` keeps an int as it is)
                value = kept
            else:
                value = step.emitted[0][1]
                kind = type(value)
                if kind is not int and kind is not str and kind is not float:
                    # as encoded at the emit, copied (orjson's bytes, kept, cost far more to
                    # allocate); else immutable, accepted by ``check``: written as it was
                    assert type(kept) is bytes
                    value = orjson.Fragment(b"%b" % kept)
            sent.clear()  # (no new list: nothing else holds it)
        self._pending = None
        run = self._run
        if (
            run is not None
            and run.next_seq == step.seq
            and run.slot == slot
            and run.event == event
            and (run.step is step or run.continued_by(job.id, step))
        ):
            run.next_seq += 1
            run.items.append(value)
        else:
            if run is not None:
                self._seal()
            self._run = StepRun(job.id, step, slot, event, value)
        self._count += 1
        if self._count >= self.max_batch:
            self._full()
        return True

    def _step_line(self, job: Job, step: Step, sent: list[tuple[bytes, int, bytes | int]] | None) -> None:
        """A completed step as one line (``sent``: its held-back enqueues, if it was held
        back since its start: the line stands for its start too)."""
        try:
            line = self._codec.finished(step, sent, self._item)
        except UnstorableError as e:
            job.fail(f"routine {step.routine!r}: the durable journal cannot record its {e}")
            return
        if sent is not None:
            self._pending = None
            if sent:
                self._pending_enq = []
        self._add(job, line)

    def _seal(self) -> None:
        """Write the open run of whole steps as its line (``StepRun.line``)."""
        run = self._run
        assert run is not None
        self._run = None
        self._rows_of(run.job_id).append(run.line(self._codec.names))
        n = len(run.items)
        if n > 1:
            self._in_runs[run.job_id] = self._in_runs.get(run.job_id, 0) + n - 1

    def dead_lettered(self, job: Job, letter: DeadLetter, *, from_queue: bool) -> None:
        try:
            item = self._item(letter.item)
        except UnstorableError:
            item = orjson.dumps(repr(letter.item))  # a record of it, though not the object
        of_input = job.letters.refusing_input
        self._add(job, Codec.dead_letter(letter, item, queued=from_queue, of_input=of_input))

    def _rows_of(self, job_id: str) -> list[bytes]:
        """``job_id``'s list of buffered records (made if need be), kept as the last one."""
        if job_id == self._last_id:
            return self._last
        rows = self._rows.get(job_id)
        if rows is None:
            rows = self._rows[job_id] = []
        self._last_id, self._last = job_id, rows
        return rows

    def _add(self, job: Job, text: bytes) -> None:
        if self._pending is not None:
            self._release()
        if self._run is not None:
            self._seal()
        job_id = job.id
        if job_id == self._last_id:
            self._last.append(text)
        else:
            self._rows_of(job_id).append(text)
        self._count += 1
        if self._count >= self.max_batch:
            self._full()
        elif self._timer is None:  # the first record since the last flush started
            self._timer = job.loop.call_later(self.max_delay_s, self._flush_soon, True)

    def _full(self) -> None:
        """A full batch is buffered: commit it now (a flush under way takes these too)."""
        flushing = self._flushing
        if flushing is None or flushing.done():
            self._flush_soon(now=True)

    def lagging(self) -> Awaitable[None] | None:
        """The batch being committed, while ``LAG_BATCHES`` full ones wait behind it.

        Routines that make records faster than the store commits them wait here
        instead of the buffer growing without bound, so the committed journal never
        trails a job by much more than that. The wait also lets a store's thread in
        (the SQLite store's, when the write lock was taken): a busy event loop takes
        the GIL back within microseconds whenever it polls, so a thread that wants it
        could otherwise wait until the job ends."""
        if self._count < LAG_BATCHES * self.max_batch:  # (first: asked before every call)
            return None
        flushing = self._flushing
        if flushing is not None and not flushing.done():
            return asyncio.shield(flushing)
        return None

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
            log.warning("journal_not_committed", error=f"{type(e).__name__}: {e}", buffered=self._count)
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(RETRY_S, self._flush_soon, True)

    async def flush(self) -> None:
        """Commit everything buffered so far: one row per job per batch, its records
        newline-separated (JSON text has no raw newlines), in one transaction.

        Fenced, each job's batches are numbered within its claim (``begin``), and a batch
        whose append failed is sent again as it was, with its numbers, before anything
        newer: when the store had committed it and only its reply was lost, the store
        skips it (``append_journal(batches=...)``) instead of holding its records twice
        (a replay would deliver them twice). A batch the store refuses for what it holds
        (``StoreRefusedError``) is sent job by job; a job refused again loses its records
        and is given up (``on_lost``), the others are written."""
        async with self._lock:
            while True:
                if self._unsent is None and not self._next_batch():
                    break
                assert self._unsent is not None
                texts, numbers, records = self._unsent
                tokens = self._tokens
                held: dict[str, int] | None = None
                batches: dict[str, int] | None = None
                if tokens is not None:  # only the jobs still held under the batch's token
                    held = {j: tokens[j] for j in texts if j in tokens and tokens[j] == numbers[j][0]}
                    batches = {j: numbers[j][1] for j in held}
                rows = [(j, text) for j, text in texts.items() if held is None or j in held]
                resent = self._resending
                try:
                    try:
                        refused = await self.store.append_journal(
                            rows, tokens=held, batches=batches, resent=resent
                        )
                    except StoreRefusedError:
                        refused = await self._job_by_job(rows, held, batches)
                except Exception as e:  # kept for the owner of the job to see; re-raised
                    # (job by job too: the jobs already written alone are skipped when
                    # the batch goes again, as a resent one)
                    self.error = e
                    self._resending = True
                    raise  # (``_unsent`` stays: the next flush sends it again)
                self._unsent = None
                self._resending = False
                self.committed += records
                if refused:
                    self._lose(refused, held)

    def _next_batch(self) -> bool:
        """Make the buffered records the next batch to send (``_unsent``); ``False`` if
        there are none."""
        if self._pending is not None:  # (each pass: a step may have started meanwhile)
            self._release()
        if self._run is not None:
            self._seal()
        if not self._count:
            return False
        rows, count = self._rows, self._count
        self._rows, self._count, self._last_id, self._last = {}, 0, "", []
        self._in_runs = {}
        tokens = self._tokens
        numbers: dict[str, tuple[int, int]] = {}
        if tokens is not None:  # only the jobs held: others' records are dropped
            if any(j not in tokens for j in rows):
                rows = {j: texts for j, texts in rows.items() if j in tokens}
            for job_id in rows:
                n = self._batch_no.get(job_id, 0) + 1
                self._batch_no[job_id] = n
                numbers[job_id] = (tokens[job_id], n)
        texts = {job_id: b"\n".join(lines).decode() for job_id, lines in rows.items()}
        self._unsent = (texts, numbers, count)
        return True

    async def _job_by_job(
        self, rows: list[tuple[str, str]], held: dict[str, int] | None, batches: dict[str, int] | None
    ) -> list[str]:
        refused: list[str] = []
        for job_id, text in rows:
            one = None if held is None else {job_id: held[job_id]}
            number = None if batches is None else {job_id: batches[job_id]}
            try:
                refused += await self.store.append_journal(
                    [(job_id, text)], tokens=one, batches=number, resent=self._resending
                )
            except StoreRefusedError as e:
                log.error("journal_not_stored", job=job_id, error=str(e))
                refused.append(job_id)
        return refused

    def job_finished_now(self, job: Job, result: JobResult) -> None:
        """(Plain: nothing to await, so the job closes in the frame that ended it.)
        A completed job's records not yet committed are dropped: once its outcome is
        stored nobody replays them (short jobs then write no journal at all; should the
        process die before the outcome is stored, the job resumes from its last committed
        step). Other jobs' last records go with the next batch: whoever reports an
        outcome awaits ``flush()`` first (the worker does), so many jobs share one
        transaction."""
        if result.status is JobStatus.COMPLETED and self.drop_completed:
            self.dropped += self._drop(job.id) + self._unmade.pop(job.id, 0)
        elif self._count and self._timer is None:
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
        """What the store committed for ``job_id``, decoded into ``LogJournal`` records (in
        a thread: a long journal takes seconds to decode, and the loop must go on renewing
        leases meanwhile: review s19 F)."""
        rows = await self.store.read_journal(job_id)
        return await asyncio.to_thread(decoded, job_id, rows) if rows else []
