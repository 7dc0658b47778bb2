"""``RunnerPart``: what the base classes of ``RoutineRunner`` that hold one concept each
(``lanes.Lanes``, ``journal_run.JournaledCalls``) use of the runner, declared once.

Nothing here runs: the attributes are the runner's (set by ``RoutineRunner.__init__``)
and the methods are declared for the type checker only, so a part calls the runner's
own without a layer in between; ``_cancelled`` is the one shared behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from .activation import BoundActivation, Taken
    from .context import Context
    from .job import Job
    from .slot_queue import SlotQueue


class RunnerPart:
    """The ``RoutineRunner`` as its parts see it."""

    job: Job
    name: str
    acts: list[BoundActivation]
    state: dict[str, Any]
    ctx: Context
    seq: int
    watch_start: bool
    active: int
    calls: int
    busy_s: float
    paused: bool

    if TYPE_CHECKING:

        def wake(self) -> None: ...
        def _settle(self, taken: Taken, dead: tuple[str, str | None] | None) -> None: ...
        async def _call_fast(self, act: BoundActivation) -> None: ...

        # one handler call with its retries (the error policy): ``RoutineRunner._call``
        _call: Callable[..., Coroutine[Any, Any, None]]

    def _cancelled(self, q: SlotQueue, item: Any) -> None:
        """A call of ``item`` from ``q`` was cancelled (the job ends): the item settles as
        the job's end says (the caller re-raises the cancellation)."""
        self._settle([(q, item)], (self.job.end_reason or "job_cancelled", None))
