"""Items given to a pipeline with ``send``: kept until its child finished them.

Every ``send`` takes a place in the pipeline's ``SendWindow`` (at most ``capacity``
items not yet acknowledged: a full window makes ``send`` wait, as a full slot does) and
is numbered (``seq``). The child acknowledges an item once its handler returned, or
once its job dead-lettered it (``weirflow.supervise.pipeline_child``); the place is
freed then. When a child ends, every item it had not acknowledged — waiting in its
slot, in its handler, or still on its way to it — becomes a dead letter of the
pipeline (``DeadLetters``) with the reason (``child_crashed``, ``child_exited``,
``pipeline_stopped``), the slot and the item: an item is processed or recorded,
never lost without a record. The window's bound is the memory this costs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from ..errors import SendWindowFullError
from ..runtime.results import DeadLetter
from .defaults import DEFAULT_UNACKED_CAPACITY

log = structlog.get_logger("weirflow.supervise")

DEFAULT_DEAD_LETTERS_CAPACITY = 1000


@dataclass(frozen=True)
class PipelineDeadLetter(DeadLetter):
    """An item of a pipeline that was not processed, and why: ``reason`` is
    ``child_crashed`` (its child died or was replaced before finishing it: the item may
    have had effects, such as outputs, before that), ``child_exited`` (the child's job
    ended first), ``pipeline_stopped`` (the stop's grace ran out), or the reason of the
    child's job (``handler_failed``, ``dropped_oldest``...). ``seq`` numbers the sends
    of the pipeline (``None`` for an item the job made itself)."""

    seq: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, **DeadLetter.to_dict(self)}


class DeadLetters:
    """A pipeline's dead letters, the newest ``capacity`` of them kept (each is also
    logged, ``pipeline_dead_letter``; ``dropped`` counts those no longer kept)."""

    def __init__(self, pipeline: str, capacity: int = DEFAULT_DEAD_LETTERS_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("dead_letters_capacity must be at least 1")
        self.pipeline = pipeline
        self.items: deque[PipelineDeadLetter] = deque(maxlen=capacity)
        self.total = 0

    @property
    def dropped(self) -> int:
        return self.total - len(self.items)

    def add(self, letter: PipelineDeadLetter) -> None:
        self.items.append(letter)
        self.total += 1
        log.warning(
            "pipeline_dead_letter",
            pipeline=self.pipeline,
            seq=letter.seq,
            slot=letter.slot,
            reason=letter.reason,
            error=letter.error,
            item=_short(letter.item),
        )

    def list(self) -> list[PipelineDeadLetter]:
        return list(self.items)


@dataclass(slots=True)
class _Sent:
    slot: str
    item: Any
    child: object  # the ChildProcess it went to


class SendWindow:
    """Sent items not yet acknowledged by the child (see the module docstring)."""

    def __init__(self, capacity: int = DEFAULT_UNACKED_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("unacked_capacity must be at least 1")
        self.capacity = capacity
        self.pending: dict[int, _Sent] = {}
        self.reserved = 0
        self.acked = 0  # items the child finished, ever
        self._next = 0
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def waiting(self) -> int:
        """Sends waiting for a place now."""
        return len(self._waiters)

    async def reserve(self, timeout_s: float | None, *, slot: str = "") -> None:
        """Take a place, waiting up to ``timeout_s`` for one (``SendWindowFullError``, a
        ``PipelineStateError`` with state ``full``, for an item for ``slot``, then); give
        it back with ``add`` or ``unreserve``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while len(self.pending) + self.reserved >= self.capacity:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                await asyncio.wait_for(fut, None if deadline is None else max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise SendWindowFullError(slot, len(self.pending), self.capacity, timeout_s) from None
            finally:
                # timed out or cancelled: not left behind (a stuck pipeline retried on each
                # 429 would keep one future per retry until its next acknowledgement)
                if fut in self._waiters:
                    self._waiters.remove(fut)
        self.reserved += 1

    def unreserve(self) -> None:
        self.reserved -= 1
        self._wake()

    def add(self, slot: str, item: Any, child: object) -> int:
        """Number a reserved item given to ``child``."""
        self.reserved -= 1
        self._next += 1
        self.pending[self._next] = _Sent(slot, item, child)
        return self._next

    def forget(self, seq: int) -> None:
        """The child refused the item (the caller has it back)."""
        if self.pending.pop(seq, None) is not None:
            self._wake()

    def ack(self, seqs: Iterable[int]) -> None:
        """The child finished these."""
        n = 0
        for seq in seqs:
            if self.pending.pop(int(seq), None) is not None:
                n += 1
        if n:
            self.acked += n
            self._wake()

    def take(self, child: object) -> list[tuple[int, str, Any]]:
        """Every item given to ``child`` and not acknowledged, oldest first, removed."""
        seqs = [seq for seq, sent in self.pending.items() if sent.child is child]
        taken = [(seq, self.pending[seq].slot, self.pending.pop(seq).item) for seq in seqs]
        if taken:
            self._wake()
        return taken

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


def dead_letter(seq: int | None, slot: str, item: Any, reason: str, error: str | None) -> PipelineDeadLetter:
    return PipelineDeadLetter(seq=seq, slot=slot, item=item, reason=reason, error=error, at=time.time())


def _short(item: Any, limit: int = 200) -> str:
    text = repr(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."
