"""A process routine's calls sent to a child of the engine's ``ProcessPool``
(``send_calls``), and what keeps its ``ctx.state`` exact when they run at once
(``StateTurns``); ``ProcessCallRunner``, the runner of a process routine in a job with a
journal: the runtime's usual one-call-at-a-time path (each step recorded), with only the
handler's body run in a child. (``ProcessRunner``, the batching runner of a job without a
journal, is in ``process_runner``.)

``ctx.state`` with ``concurrency > 1`` (``StateTurns``): requests run at once while none
of them changes the state. The first that comes back with a changed state makes the
routine's requests take turns from then on (each starts from the state the one before
left); a request that changed the state while another's change was applied after it
started is run again from the new state (its results are dropped, as when a child dies).
"""

from __future__ import annotations

import asyncio
import pickle
from typing import TYPE_CHECKING, Any

from ..errors import UnpicklableError
from .lingering import call_in_pool
from .runner import RoutineRunner

if TYPE_CHECKING:
    from .activation import BoundActivation
    from .context import Context
    from .process import _Child
    from .process_chain import Chain


class Children(set["_Child"]):
    """Children running some calls now (``send_calls`` adds and discards them). Once
    ``kill_all`` was called, a child added is killed at once: a call that checked its
    child out as the job ended must not run there (a set's ``add`` and ``list`` are atomic
    under the GIL, so either the killer sees the child or the adder sees ``killed``)."""

    killed = False

    def add(self, child: _Child) -> None:
        super().add(child)
        if self.killed:
            child.kill()

    def kill_all(self) -> None:
        self.killed = True
        for child in list(self):
            child.kill()


class StateTurns:
    """Keeps a process routine's ``ctx.state`` exact when its requests run at once.

    Each request carries a copy of the state and comes back with the state it left. While
    no request changes it, they run concurrently. ``settle`` applies what a request left:
    a change is applied only if no other change was applied since the request started
    (else the request must run again); after the first change, ``serial`` is set and
    requests take turns (the caller holds a turn from sending to ``settle``), so every
    request starts from the state the one before left. Callers serialize ``start`` and
    ``settle`` (the runner's lock, or the event loop).
    """

    __slots__ = ("serial", "version")

    def __init__(self) -> None:
        self.version = 0  # changes applied so far
        self.serial = False  # the state has changed once: requests take turns

    def start(self, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A request starts: (the version it starts from, the state it is sent)."""
        return self.version, dict(state)

    def would_settle(self, started: tuple[int, dict[str, Any]], left: dict[str, Any] | None) -> bool:
        """Whether ``settle`` would apply ``left`` (or find nothing to apply) now."""
        version, sent = started
        return left is None or version == self.version or _same(left, sent)

    def settle(
        self, state: dict[str, Any], started: tuple[int, dict[str, Any]], left: dict[str, Any] | None
    ) -> bool:
        """Apply ``left`` (the state a request left; ``None``: it could not come back) to
        ``state``; ``False`` if the request changed a state that changed meanwhile."""
        version, sent = started
        if left is None or _same(left, sent):
            return True  # read only (or nothing came back): nothing to apply
        self.serial = True
        if version != self.version:
            return False
        self.version += 1
        state.clear()
        state.update(left)
        return True


def _same(left: dict[str, Any], sent: dict[str, Any]) -> bool:
    try:
        return bool(left == sent)
    except Exception:  # noqa: BLE001 - values that cannot be compared count as changed
        return False


def send_calls(
    runner: RoutineRunner,
    act: BoundActivation,
    calls: bytes,
    busy: set[_Child] | None = None,
    state: dict[str, Any] | None = None,
    chain: Chain | None = None,
) -> Any:
    """Run the pickled ``calls`` on a child of the pool (blocking), sending ``state`` (by
    default the routine's), and their emits through the later stages of ``chain`` if
    given; the child's reply. Raises what pickling the routine or its state raises, or
    ``WorkerDiedError``."""
    pool = runner.job.engine.processes
    key, blob = pool.routine_key(runner.routine)
    child = pool.checkout()
    if busy is not None:
        busy.add(child)
    try:
        known = key in child.known  # the routine is unpickled there already: not sent again
        head = (key, None if known else blob, act.method, act.wants_ctx, runner.job.id, runner.name)
        sent = dict(runner.state) if state is None else state
        later = () if chain is None else chain.request(pool, child.known)
        data = pickle.dumps(
            (*head, frozenset(runner.routine.events), sent, calls, later), protocol=pickle.HIGHEST_PROTOCOL
        )
        reply = child.call(data)
        child.known.add(key)
        if chain is not None:
            child.known.update(chain.keys)
        return reply
    finally:
        if busy is not None:
            busy.discard(child)
        pool.checkin(child)


class ProcessCallRunner(RoutineRunner):
    """A process routine on the usual call path (a journal records its steps): each call's
    handler body runs in a child, its emits are made here when it returns; calls running at
    once keep ``ctx.state`` exact with ``StateTurns``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turns = StateTurns()  # on the loop
        self.turn = asyncio.Lock()

    async def _invoke_sync(self, act: BoundActivation, args: tuple[Any, ...], ctx: Context) -> None:
        if act.kind == "end":  # on_end runs in this process
            await super()._invoke_sync(act, args, ctx)
            return
        items = args[:-1] if act.wants_ctx else args
        try:
            data = pickle.dumps([(ctx.attempt, items)])
        except Exception as e:
            raise UnpicklableError(f"cannot be sent to the routine's process: {type(e).__name__}: {e}") from e
        children = Children()  # the child running this call: killed if the job ends meanwhile
        while True:  # again while it changed a state that another call changed meanwhile
            serial = self.turns.serial
            if serial:
                await self.turn.acquire()
            try:
                started = self.turns.start(self.state)
                sent = started[1]
                results, state, _, _ = await call_in_pool(
                    self.job, send_calls, self, act, data, children, sent, on_cancel=children.kill_all
                )
                if self.turns.settle(self.state, started, state):
                    break
            finally:
                if serial:
                    self.turn.release()
        ok, emitted, error, _ = results[0]
        if not ok:
            raise error
        for event, item in emitted:
            await self.emit(event, item, ctx)
