"""What a job accepts from outside — starting inputs and ``send`` — and what became of it.

Every accepted input ends in exactly one of: it entered its slot (from then on
the slot's accounting covers it), or it was dead-lettered before it did, with
the job's end reason, because the job was cancelled, failed or timed out
first. Starting inputs are fed by a background task per slot that moves an
index through the given list, so when the job ends what it had not fed is the
rest of that list: dead-lettered in one go (``DeadLetterLog.add_unqueued``),
not item by item through the data path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import JobFinishedError, SlotFullError
from .delivery import enqueue
from .journal import INPUT
from .results import InputStats, made_from

if TYPE_CHECKING:
    from .job import Job
    from .slot_queue import SlotQueue


class _Feed:
    """Starting inputs of one slot; ``items[:next]`` have been fed."""

    __slots__ = ("items", "next", "queue")

    def __init__(self, queue: SlotQueue, items: list[Any]) -> None:
        self.queue = queue
        self.items = items
        self.next = 0


class _Send:
    """One ``send`` in progress; ``abandoned`` once the job's end dead-lettered its item."""

    __slots__ = ("abandoned", "item", "queue")

    def __init__(self, queue: SlotQueue, item: Any) -> None:
        self.queue = queue
        self.item = item
        self.abandoned = False


class Inputs:
    """The inputs of one job (see the module docstring)."""

    def __init__(self, job: Job, *, keep_open: bool) -> None:
        self.job = job
        self.closed = not keep_open
        self.feeds: list[_Feed] = []
        self.sends: dict[_Send, None] = {}  # (a dict: in the order they came)
        self.orphans: list[_Send] = []  # sends the job's end stopped, not yet dead-lettered
        self.running = 0  # feeds and sends under way: input is open while any runs
        self.accepted = 0
        self.entered = 0
        self.dead_lettered = 0
        self.slots: dict[str, None] = {}  # entry slots, in the order first used

    def release(self) -> None:
        """The job was released (``Job.release``): drop its feeds, sends and the link back
        to it (``closed`` and the counts stay readable)."""
        self.feeds = []
        self.sends = {}
        self.orphans = []
        del self.job

    def is_open(self) -> bool:
        """More input may still arrive (not closed, or a feed or send is under way)."""
        return not self.closed or self.running > 0

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.running == 0:
                self.job.inputs_settled()

    def _done(self) -> None:
        self.running -= 1
        if self.running == 0 and self.closed:
            self.job.inputs_settled()

    # -- starting inputs ------------------------------------------------------------

    def add_feed(self, queue: SlotQueue, items: list[Any]) -> _Feed:
        """Accept ``items`` for ``queue``, to be fed by ``feed``."""
        feed = _Feed(queue, items)
        self.feeds.append(feed)
        self.accepted += len(items)
        self.slots[queue.path] = None
        self.running += 1
        return feed

    def feed_now(self, feed: _Feed) -> bool:
        """Feed every item now, with no task, if they all fit in a slot that nothing watches;
        whether it did (if not, nothing was fed: ``feed`` feeds them, as before)."""
        job = self.job
        q = feed.queue
        items = feed.items
        if q.watched or q.putters or job.finished or len(items) > q.capacity - len(q.items):
            return False
        journal = job.journal
        if journal is not None and len(items) > 1 and self._fed_run(feed, len(items)):
            self._done()
            return True
        for item in items:
            q.append(item)
            feed.next += 1
            self.entered += 1
            if journal is not None:
                journal.enqueued(job, q.path, item, INPUT)
                if job.finished:  # (the journal failed it): the rest as ``feed`` does it
                    return False
        self._done()
        return True

    def _fed_run(self, feed: _Feed, k: int) -> bool:
        """Append the next ``k`` starting inputs of ``feed`` (they fit, nothing watches the
        slot) and have the journal record them in one call (``Journal.inputs_enqueued``);
        ``False`` (nothing done) if it would not take them so."""
        job, q = self.job, feed.queue
        journal = job.journal
        assert journal is not None
        start = feed.next
        run = feed.items[start : start + k]
        if not journal.inputs_enqueued(job, q.path, run):
            return False
        for item in run:  # (in the same frame as their records: nothing runs in between)
            q.append(item)
        feed.next += k
        self.entered += k
        return True

    async def feed(self, feed: _Feed) -> None:
        """Feed starting inputs, waiting for room. No caller waits to see a rejection
        here, so an item a ``fail`` slot (or a block timeout) refuses is dead-lettered
        as ``input_rejected`` (it counts as entered: the slot counts it)."""
        job = self.job
        journal = job.journal
        q = feed.queue
        items = feed.items
        end = len(items)
        run = journal is None and q.shared  # runs of items under one lock (``append_run``)
        try:
            while feed.next < end:
                if run and not q.watched and not job.finished:
                    k = q.append_run(items, feed.next)  # type: ignore[attr-defined]
                    if k:
                        feed.next += k
                        self.entered += k
                        continue
                if journal is not None and not q.watched and not q.putters and not job.finished:
                    k = min(end - feed.next, q.capacity - len(q.items))
                    if k > 1 and self._fed_run(feed, k):
                        continue
                item = items[feed.next]
                if not q.watched and not job.finished and q.try_append(item):
                    # room and nothing watching: no coroutine per item
                    if journal is not None:
                        journal.enqueued(job, q.path, item, INPUT)
                else:
                    try:
                        await enqueue(job, q, item, q.block_timeout_s, False, INPUT)
                    except SlotFullError as e:
                        q.refuse(item, "input_rejected", str(e), of_input=True)
                feed.next += 1  # (not reached when cancelled: the item stays unfed)
                self.entered += 1
        finally:
            self._done()

    # -- send -----------------------------------------------------------------------

    async def send(self, queue: SlotQueue, item: Any, timeout_s: float | None) -> None:
        """Put ``item`` into ``queue``; accepted unless it raises ``SlotFullError``."""
        token = _Send(queue, item)
        self.sends[token] = None
        self.accepted += 1
        self.slots[queue.path] = None
        self.running += 1
        try:
            await enqueue(self.job, queue, item, timeout_s, False, None)
        except (SlotFullError, JobFinishedError):
            if token.abandoned:  # the job ended first: the item is a dead letter, not given back
                raise JobFinishedError(
                    f"job {self.job.id} is {self.job.status.value}; the item sent to {queue.path} "
                    f"was dead-lettered before it entered the slot"
                ) from None
            self.accepted -= 1  # refused: the caller has it back
            raise
        except BaseException:
            if not token.abandoned:
                self.accepted -= 1
            raise
        else:
            self.entered += 1
        finally:
            del self.sends[token]
            self._done()

    # -- the end --------------------------------------------------------------------

    def stop(self) -> None:
        """The job ended: every send still waiting will have its item dead-lettered (by
        ``abandon``) and raises ``JobFinishedError`` saying so. Call before any await."""
        for token in self.sends:
            if not token.abandoned:
                token.abandoned = True
                self.orphans.append(token)

    def abandon(self, reason: str, error: str | None) -> None:
        """Dead-letter every input that has not entered its slot: the sends ``stop`` found
        waiting, then the starting inputs not fed."""
        letters = self.job.letters
        orphans, self.orphans = self.orphans, []
        for token in orphans:
            self.dead_lettered += 1
            letters.add(token.queue.path, token.item, reason, error)
        for feed in self.feeds:
            rest = feed.items[feed.next :]
            feed.next = len(feed.items)
            self.dead_lettered += len(rest)
            letters.add_unqueued(feed.queue.path, rest, reason, error)

    def waiting(self) -> int:
        sending = sum(not s.abandoned for s in self.sends) + len(self.orphans)
        return sum(len(f.items) - f.next for f in self.feeds) + sending

    def stats(self) -> InputStats:
        return made_from(
            InputStats,
            {
                "accepted": self.accepted,
                "entered": self.entered,
                "waiting": self.waiting(),
                "dead_lettered": self.dead_lettered,
            },
        )
