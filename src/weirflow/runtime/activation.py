"""An activation of a routine bound to one job's slot queues: readiness, taking items,
and the call's arguments."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import WeirflowError
from .slot_queue import SlotQueue

if TYPE_CHECKING:
    from ..flow.routine import Activation
    from .replay import Rerun
    from .runner import RoutineRunner

Taken = list[tuple[SlotQueue, Any]]


class BoundActivation:
    """An activation bound to this job's queues."""

    __slots__ = (
        "first_attempt",
        "fn",
        "is_async",
        "kind",
        "max_items",
        "max_wait_s",
        "method",
        "queues",
        "rerun",
        "runner",
        "since",
        "wants_ctx",
    )

    def __init__(self, runner: RoutineRunner, act: Activation | None) -> None:
        self.runner = runner
        self.since: float | None = None
        self.first_attempt = 1  # > 1 when take() got an item whose call a crash interrupted
        self.rerun: Rerun | None = None  # that call
        if act is None:  # on_end
            self.kind = "end"
            self.queues: tuple[SlotQueue, ...] = ()
            self.fn: Callable[..., Any] = runner.routine.on_end
            self.method = "on_end"
            self.is_async = runner.routine.on_end_is_async
            self.wants_ctx = True
            self.max_items = 0
            self.max_wait_s = 0.0
            return
        self.kind = act.kind
        self.queues = tuple(runner.queues[s] for s in act.slots)
        self.fn = getattr(runner.routine, act.method)
        self.method = act.method
        self.is_async = act.is_async
        self.wants_ctx = act.wants_ctx
        self.max_items = act.max_items
        self.max_wait_s = act.max_wait_s

    def has_work(self) -> bool:
        if self.kind == "join":
            return all(q.items for q in self.queues)
        return bool(self.queues[0].items)

    def ready(self) -> bool:
        kind = self.kind
        if kind == "each":
            return bool(self.queues[0].items)
        if kind == "join":
            return all(q.items for q in self.queues)
        n = len(self.queues[0].items)
        if n == 0:
            self.since = None
            return False
        if n >= self.max_items:
            return True
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.runner.job.loop.call_later(self.max_wait_s, self.runner.wake)
        return now - self.since >= self.max_wait_s or self.runner.job.tracker.no_more_input(self.runner)

    def take(self) -> Taken:
        if self.kind == "each":
            q = self.queues[0]
            taken = [(q, q.take())]
        elif self.kind == "join":
            taken = [(q, q.take()) for q in self.queues]
        else:
            self.since = None
            q = self.queues[0]
            taken = [(q, q.take()) for _ in range(min(self.max_items, len(q.items)))]
        return taken

    def take_locked(self) -> Taken:
        """``take`` from shared queues whose lock the caller holds (one item, or a join's)."""
        return [(q, q.take_locked()) for q in self.queues]  # type: ignore[attr-defined]

    def take_resumed(self) -> Taken:
        """``take``, noting in ``first_attempt`` and ``rerun`` the interrupted call (restored
        from a journal) the items at the front belong to; a batch call takes exactly that
        call's items again."""
        queues = self.queues
        if not any(q.rerun_attempts for q in queues):
            self.first_attempt, self.rerun = 1, None
            return self.take()
        rerun: Rerun | None = None
        taken: Taken = []
        for q in queues:
            r = q.rerun_attempts.popleft() if q.rerun_attempts else None
            rerun = rerun or r
            taken.append((q, q.take()))
            if self.kind == "batch":
                self.since = None
                while q.rerun_attempts and q.rerun_attempts[0] is r:
                    q.rerun_attempts.popleft()
                    taken.append((q, q.take()))
        assert rerun is not None
        self.first_attempt, self.rerun = rerun.attempt, rerun
        return taken

    def args(self, taken: Taken) -> tuple[Any, ...]:
        if self.kind == "batch":
            return ([item for _, item in taken],)
        return tuple(item for _, item in taken)

    def point_item(self, taken: Taken) -> Any:
        if self.kind == "each":
            return taken[0][1]
        if self.kind == "batch":
            return [item for _, item in taken]
        return tuple(item for _, item in taken)

    def replace(self, taken: Taken, value: Any) -> Taken:
        if self.kind == "each":
            return [(taken[0][0], value)]
        values = list(value)
        if len(values) != len(taken):
            raise WeirflowError(f"replacement for a {self.kind} call must have {len(taken)} items")
        return [(q, v) for (q, _), v in zip(taken, values, strict=True)]
