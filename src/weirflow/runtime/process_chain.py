"""Process chains: consecutive process routines whose calls run inside one child request
(``Chain``), and how a chain is cut into segments by what its routines cost (``cut``).
Which routines form a chain is ``process_runner._spans``'s (it needs the runner classes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .process import MAX_BATCH
from .shared_queue import SharedSlotQueue

if TYPE_CHECKING:
    from .process_runner import ProcessRunner

#: later stages a request takes along, at most
MAX_STAGES = 16

#: the parent's CPU per item and per segment of a chain (a hop through the parent:
#: pickling, the pipe, applying the reply, the slot), until measured (``ProcessRunner.hop``)
HOP_S = 10e-6


def cut(chain: list[ProcessRunner], processes: int) -> None:
    """Cut a process chain into segments, each run by requests of its first routine (a
    request takes along the stages up to the end of its segment: ``span``).

    A request runs its stages one after the other in one child, and holds each of them
    (``concurrency = 1``: one call at a time, in order) until it returns, so a segment
    whose calls cost ``s`` per item lets at most ``concurrency / s`` items through per
    second; and every item costs the children the whole chain's ``C`` plus the parent
    ``h`` per segment, on ``processes`` cores. The time per item is then about
    ``max(max(s) / concurrency, (C + k * h) / processes)`` with ``k`` segments: the cut is
    the one with the least, the per-stage costs measured (the busy time of each
    routine's calls, counted as ``1`` each until every stage has some) and ``h`` measured
    on the parent's worker threads (``HOP_S`` until then). Cutting by count into
    ``processes / concurrency`` segments capped 5 routines of concurrency 1 on 2 children
    at 5/3 of one core (3 + 2): here they are cut 2 + 2 + 1 (three requests in flight,
    one per segment, on two children: a child freed by one segment takes the next
    segment's request while the parent applies the reply)."""
    n = len(chain)
    wide = min(r.concurrency for r in chain)
    measured = all(r.cpu_calls > 0 and r.cpu_s > 0 for r in chain)
    costs = [r.cpu_s / r.cpu_calls for r in chain] if measured else [1.0] * n
    hops = [r.hop_items for r in chain if r.hop_items]
    hop = 0.0  # (costs of 1 each: unknown against a hop's seconds)
    if measured:
        hop = sum(r.hop_s for r in chain) / sum(hops) if hops else HOP_S
    total = sum(costs)
    limit = MAX_STAGES + 1  # routines per segment, at most
    # best[k][i]: the least largest segment cost cutting chain[:i] into k segments
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(n + 1)]
    cut = [[0] * (n + 1) for _ in range(n + 1)]
    best[0][0] = 0.0
    for k in range(1, n + 1):
        for i in range(1, n + 1):
            for j in range(max(k - 1, i - limit), i):
                worst = max(best[k - 1][j], sum(costs[j:i]))
                if worst < best[k][i]:
                    best[k][i], cut[k][i] = worst, j
    pick, least = 1, inf
    for k in range(1, n + 1):
        t = max(best[k][n] / wide, (total + k * hop) / processes)
        if t < least * (1 - 1e-9):
            pick, least = k, t
    ends = []
    i = n
    for k in range(pick, 0, -1):
        ends.append(i)
        i = cut[k][i]
    start = 0
    for end in reversed(ends):
        for k in range(start, end):
            chain[k].span = end - 1 - k
        start = end

    head = chain[0]
    head.cut_at_calls = 2 * head.cpu_calls if measured else head.cpu_calls + MAX_BATCH


class Chain:
    """Process routines whose calls run inside one child request after the request's own
    routine's (a *process chain*), instead of going back to the parent between them: the
    items between them never sit in their slots (each such slot counts them as enqueued
    and processed when the reply is applied), and the later routines' calls count as
    running calls of theirs while the request is out (their ``busy``), so ``pause``
    waits for them and their own workers take nothing meanwhile (``chained``). A later
    routine's state is sent with the request; what it left is applied on the reply's
    return, checked first with the request's own (``SETTLING``): if another request
    changed one of them meanwhile, the whole request runs again (``StateTurns``).

    A stage joins a request only while nothing watches the route into it or its calls
    (hooks: on_emit, on_route, on_enqueue, on_handler_start/end), it is not paused (nor
    the job), none of its own calls runs, fewer requests than its ``concurrency`` hold
    it, and its state has not started taking turns: that is checked, and the stage
    marked, under its lock. A failed call of a later stage fails the job (its policy:
    ``_chain_stage``) naming that routine, and the item it failed on is its dead letter;
    a child dying during a later stage's call fails the job the same way (that call's
    item died with the child: the request's own item is settled by the job's end)."""

    __slots__ = ("keys", "stages", "started")

    def __init__(self, stages: list[ProcessRunner], started: list[tuple[int, dict[str, Any]]]) -> None:
        self.stages = stages
        self.started = started
        self.keys: list[str] = []

    def request(self, pool: Any, known: set[str]) -> tuple[Any, ...]:
        """The later stages as a request carries them (a routine the child has not seen
        goes with its pickle)."""
        out = []
        for runner, started in zip(self.stages, self.started, strict=True):
            key, blob = pool.routine_key(runner.routine)
            self.keys.append(key)
            act = runner.acts[0]
            events = frozenset(runner.routine.events)
            blob_sent = None if key in known else blob
            out.append((key, blob_sent, act.method, act.wants_ctx, runner.name, events, started[1]))
        return tuple(out)

    def settles(self, later: Any) -> bool:
        """Whether every state the later stages left can be applied (``SETTLING`` held)."""
        for runner, started, state in zip(self.stages, self.started, later[1], strict=True):
            with runner.lock:
                if not runner.turns.would_settle(started, state):
                    return False
        return True

    def apply(self, later: Any) -> tuple[int, Any, BaseException, float] | None:
        """Count what the later stages did and apply their states (the reply's part for
        them; ``settles`` said yes, ``SETTLING`` held); the failure, if any."""
        stats, states, failed = later
        for i, runner in enumerate(self.stages):
            calls, busy_s, cpu_s = stats[i]
            q = cast(SharedSlotQueue, runner.acts[0].queues[0])
            with runner.lock:
                if calls:
                    q.passed_through_locked(int(calls))
                    runner.calls += int(calls)
                    runner.busy_s += busy_s
                    runner.cpu_s += cpu_s
                    runner.cpu_calls += int(calls)
                runner.turns.settle(runner.state, self.started[i], states[i])
        return cast("tuple[int, Any, BaseException, float] | None", failed)

    def release(self) -> None:
        """The request is done: the later stages' own workers may take again."""
        for runner in self.stages:
            with runner.lock:
                runner.busy -= 1
                runner.chained -= 1
                runner.cond.notify_all()
                runner.kick_after_chain_locked()
