"""Hooks: observe and hold items at every point of the data path.

Subclass ``Hooks`` and override what you need; every method here is a no-op and
the runtime skips methods a hook does not override, so an unused hook point
costs nothing on the fast path.

The *item* hook points (``on_emit``, ``on_route``, ``on_enqueue``,
``on_handler_start``) are coroutines and may **hold** the item by awaiting:
the producer (or the handler call) waits meanwhile, nothing is dropped and the
accounting invariant keeps holding — at ``on_emit``/``on_route``/``on_enqueue``
the item is not in the slot yet (the emitter is still inside ``emit``); at
``on_handler_start`` it is counted ``in_flight``. While a hook holds an item,
``Job.pause()`` treats that call as being at a safe point. A hook may replace
``point.item`` or call ``point.drop(reason)``, which dead-letters the item with
reason ``reason``.

The *notification* hooks (``on_handler_end``, ``on_job_status``,
``on_job_result``, ``on_dead_letter``, ``on_queue_state``) are plain methods called on the event
loop; they must not block.

**A hook that raises** (any ``Exception``) is contained: the error is logged
(``hook_failed``, with the hook's class and the hook point), counted in
``Engine.hook_errors`` (the metric ``weirflow_hook_errors_total``), and the job
goes on exactly as if the hook had returned (an item hook's ``point.item`` and
``point.drop`` as the hook left them). A hook class that sets ``fatal = True``
makes the job fail instead, with an error naming the hook; its item still goes
on as if the hook had returned, and is then dead-lettered by the job's end like
every other unfinished item. Either way ``job.wait()`` returns.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from .job import Job
    from .results import DeadLetter, JobResult, JobStatus

ITEM_POINTS = ("on_emit", "on_route", "on_enqueue", "on_handler_start")
NOTIFY_POINTS = ("on_handler_end", "on_job_status", "on_job_result", "on_dead_letter", "on_queue_state")

log = structlog.get_logger("weirflow.runtime")


@dataclass
class HookPoint:
    """An item at a hook point. ``kind`` is ``emit``, ``route``, ``enqueue`` or ``handler_start``.

    ``routine`` is the emitting routine for ``emit``/``route`` (``None`` for an
    external ``send``), the receiving routine for ``enqueue``/``handler_start``.
    ``slot`` is ``"routine.slot"`` where known, ``event`` is ``"routine.event"``
    where known. For ``handler_start`` of a batch, ``item`` is the list; of a
    join, the tuple of items (``grouped`` is set; a replacement must have as many).
    """

    kind: str
    job: Job
    routine: str | None
    item: Any
    event: str | None = None
    slot: str | None = None
    attempt: int = 1
    drop_reason: str | None = None
    grouped: bool = False  # handler_start of a batch or join: ``item`` holds several items

    @property
    def connection(self) -> str | None:
        """``"a.event -> b.slot"`` for ``route`` points."""
        if self.event is None or self.slot is None:
            return None
        return f"{self.event} -> {self.slot}"

    def drop(self, reason: str) -> None:
        """Dead-letter this item with ``reason`` instead of passing it on."""
        self.drop_reason = reason


class Hooks:
    """Base class of runtime hooks; every method is a documented no-op.

    ``fatal``: when ``True``, an exception from one of this hook's methods fails the
    job (with an error naming the hook) instead of being logged and counted only.
    ``ends_now``: see below.
    """

    fatal: bool = False
    #: when ``True``, ``on_handler_end`` hears of every call of a plain ``def`` (or process)
    #: routine before its worker thread goes on to the next item: the worker hands the end
    #: to the loop and waits until the hooks were called. Else a worker hands ends over in
    #: batches (every ``threads.END_BATCH`` calls, or when it goes idle), which costs
    #: nothing per call; set it for a hook whose record of an end must not lag (a
    #: pipeline's acknowledgements: a crash must not take back what had finished).
    ends_now: bool = False

    def watches(self, point: str, target: str) -> bool:
        """Whether this hook wants item hook point ``point`` at ``target``.

        ``point`` is ``on_emit`` (target ``"routine.event"``), ``on_route``
        (``"routine.event -> routine.slot"``), ``on_enqueue`` (``"routine.slot"``)
        or ``on_handler_start`` (``"routine"``). The runtime asks when hooks are
        attached and on ``Job.refresh_hooks()``, and keeps the fast path wherever no
        hook watches, so a hook that narrows this costs nothing elsewhere. The
        default watches everything.
        """
        return True

    async def on_emit(self, point: HookPoint) -> None:
        """A routine emits ``point.item`` on ``point.event`` (before any routing)."""

    async def on_route(self, point: HookPoint) -> None:
        """``point.item`` crosses the connection ``point.event -> point.slot``."""

    async def on_enqueue(self, point: HookPoint) -> None:
        """``point.item`` arrives at ``point.slot``, before it is queued (emits and sends)."""

    async def on_handler_start(self, point: HookPoint) -> None:
        """A handler of ``point.routine`` is about to be called with ``point.item``."""

    def on_handler_end(
        self, job: Job, routine: str, item: Any, error: BaseException | None, duration_s: float
    ) -> None:
        """A handler call returned (``error`` is ``None``) or raised."""

    def on_job_status(self, job: Job, status: JobStatus, reason: str | None) -> None:
        """The job moved to ``status`` (``reason`` is the pause reason or the error text)."""

    def on_job_result(self, job: Job, result: JobResult) -> None:
        """The job's result is final: everything is settled and ``job.wait()`` returns it."""

    def on_dead_letter(self, job: Job, letter: DeadLetter) -> None:
        """An item was dead-lettered."""

    def on_queue_state(self, job: Job, slot: str, state: str) -> None:
        """A slot's fill state changed between ``ok``, ``near_full`` and ``full``."""


class HookSet:
    """The hooks of one job, sorted by the points they override."""

    def __init__(self, hooks: list[Hooks]) -> None:
        self.hooks = list(hooks)
        self.by_point: dict[str, list[Any]] = {}
        for point in ITEM_POINTS + NOTIFY_POINTS:
            base = getattr(Hooks, point)
            self.by_point[point] = [
                _bound(getattr(h, point), h) for h in self.hooks if getattr(type(h), point) is not base
            ]
        self.emit = self.by_point["on_emit"]
        self.route = self.by_point["on_route"]
        self.enqueue = self.by_point["on_enqueue"]
        self.handler_start = self.by_point["on_handler_start"]
        self.handler_end = self.by_point["on_handler_end"]
        self.ends_now = any(fn.__self__.ends_now for fn in self.handler_end)
        self.job_status = self.by_point["on_job_status"]
        self.job_result = self.by_point["on_job_result"]
        self.dead_letter = self.by_point["on_dead_letter"]
        self.queue_state = self.by_point["on_queue_state"]

    def watching(self, point: str, target: str) -> bool:
        """Whether any hook overriding ``point`` watches ``target``."""
        fns = self.by_point[point]
        return bool(fns) and any(fn.__self__.watches(point, target) for fn in fns)


def _bound(fn: Any, hook: Hooks) -> Any:
    """``fn`` (a hook's override of a point) as a method bound to ``hook``, whose
    ``__self__`` says which hook it is (``ends_now``, ``watches``, ``fatal``, the class
    name in the log): a staticmethod, a classmethod or a callable class attribute is
    called through a bound wrapper."""
    if getattr(fn, "__self__", None) is hook:
        return fn

    def call(_hook: Hooks, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return types.MethodType(call, hook)


def hook_failure(
    counts: dict[tuple[str, str], int], job_id: str, fn: Any, point: str, error: BaseException
) -> str | None:
    """Log and count a hook's exception; the job's error text if the hook is ``fatal``."""
    owner = getattr(fn, "__self__", None)
    cls = type(owner).__qualname__ if owner is not None else "?"
    key = (cls, point)
    counts[key] = counts.get(key, 0) + 1
    fatal = bool(getattr(owner, "fatal", False))
    log.error(
        "hook_failed",
        hook=cls,
        point=point,
        job=job_id,
        fatal=fatal,
        error=f"{type(error).__name__}: {error}",
        # the traceback once per hook and point: a hook failing on every item must not
        # make the job crawl (rendering one takes milliseconds)
        exc_info=error if counts[key] == 1 else None,
    )
    if not fatal:
        return None
    return f"hook {cls}.{point} raised {type(error).__name__}: {error}"
