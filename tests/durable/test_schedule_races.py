"""A schedule's tick is one job however its firers interleave with each other and with a
retention sweep that deletes the tick's job, and its idempotency key, between them
(review s19 I: on Redis a firer that had read the schedule before another fired the tick
made the tick's job again once retention had deleted the first one).

Each firer is a store of its own on the same database whose round trips to the server
wait until the test lets them go, one at a time (a firer paused by a slow link, a GC
pause or a SIGSTOP between its calls); the sweep (on a third store) runs the tick's job
and deletes it by retention. Every interleaving of the two firers and the sweep is run,
on every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from weirflow.durable import Store
from weirflow.durable.models import Retention
from weirflow.durable.postgres import PostgresStore
from weirflow.durable.redis_store import RedisStore
from weirflow.durable.schedules import Fired, Schedule
from weirflow.durable.sqlite import SqliteStore

from .conftest import FakeClock, StoreFactory

WAIT_S = 60.0  # a bound on a store call, not a speed claim


class Firer:
    """``fire_schedules(queue)`` on ``store``, one round trip to the server per ``step``:
    the first step starts it and runs it up to its first round trip, each next one lets
    that round trip go and runs it up to the next one (or to its end)."""

    def __init__(self, store: Store, queue: str) -> None:
        self.store, self.queue = store, queue
        self.task: asyncio.Task[Fired] | None = None
        self.stops: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
        self.go: asyncio.Future[None] | None = None

    @property
    def finished(self) -> bool:
        return self.task is not None and self.task.done()

    async def stop(self) -> None:
        """(Called before each round trip of the store: waits for the next step, in the
        firer's own task only.)"""
        if self.task is None or asyncio.current_task() is not self.task:
            return
        go = asyncio.get_running_loop().create_future()
        self.stops.put_nowait(go)
        await go

    async def step(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.store.fire_schedules(self.queue))
        else:
            assert self.go is not None
            self.go.set_result(None)
        self.go = None
        stopped = asyncio.create_task(self.stops.get())
        done, _ = await asyncio.wait({stopped, self.task}, timeout=WAIT_S, return_when="FIRST_COMPLETED")
        assert done, "a firer's round trip took longer than the bound"
        if stopped in done:
            self.go = stopped.result()
        else:
            stopped.cancel()

    def fired(self) -> Fired:
        assert self.task is not None
        return self.task.result()


def paced(store: Store, firers: list[Firer]) -> None:
    """Make each round trip ``store`` makes to its server wait for the step of the firer
    (of ``firers``) whose task makes it: the calls every store method goes through."""

    async def stop() -> None:
        for firer in firers:
            await firer.stop()

    if isinstance(store, RedisStore | SqliteStore):  # (SQLite: every call, reads and writes)
        call = store._call

        async def paced_call(*args: Any, **kwargs: Any) -> Any:
            await stop()
            return await call(*args, **kwargs)

        store._call = paced_call  # type: ignore[method-assign]
    elif isinstance(store, PostgresStore):  # (a transaction is one step: it holds its rows)
        conn = store._conn

        @contextlib.asynccontextmanager
        async def paced_conn() -> AsyncIterator[Any]:
            await stop()
            async with conn() as c:
                yield c

        store._conn = paced_conn  # type: ignore[method-assign]
    # (memory: no round trips; a firing is one step)


class Sweep:
    """Runs the queue's jobs to completion and deletes every completed job (retention
    keeping none), in one step: what a busy queue's workers and sweeper do to a tick's
    job while a firer is paused."""

    def __init__(self, store: Store, queue: str) -> None:
        self.store, self.queue = store, queue
        self.finished = False

    async def step(self) -> None:
        claim = await self.store.claim(self.queue, "w", limit=10, lease_s=60)
        if claim.jobs:
            await self.store.complete("w", [(j.id, j.runs, {}) for j in claim.jobs])
        await self.store.clean(Retention(keep_completed_count=0))
        self.finished = True


async def test_a_tick_is_one_job_in_every_interleaving_of_two_firers_and_a_retention_sweep(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    firers: list[Firer] = []
    a, b, sweeper = [await make_store(clock=clock) for _ in range(3)]
    for store in (a, b):
        paced(store, firers)
    runs = 0

    async def run(plan: list[str]) -> list[tuple[str, list[str]]]:
        """One interleaving: ``plan``'s steps, then the first actor left at each step;
        the steps taken, each with the actors that could have taken it."""
        nonlocal runs
        runs += 1
        queue = f"q{runs}"
        stored = await a.add_schedule(Schedule(name=queue, flow="f", inputs={}, queue=queue, every_s=60))
        clock.now = stored.next_at  # the tick is due
        firers[:] = [Firer(a, queue), Firer(b, queue)]
        actors: dict[str, Firer | Sweep] = {"a": firers[0], "b": firers[1], "s": Sweep(sweeper, queue)}
        trace: list[tuple[str, list[str]]] = []
        while left := [name for name, actor in actors.items() if not actor.finished]:
            name = plan[len(trace)] if len(trace) < len(plan) else left[0]
            trace.append((name, left))
            await actors[name].step()
        made = [*firers[0].fired().jobs, *firers[1].fired().jobs]
        order = " ".join(name for name, _ in trace)
        assert len(made) == 1, f"{order}: the tick made {len(made)} jobs"
        [s] = await sweeper.list_schedules(queue=queue)
        assert (s.last_at, s.last_job_id, s.next_at) == (stored.next_at, made[0], stored.next_at + 60), order
        assert len(await sweeper.list_jobs(queue=queue)) <= 1, order
        return trace

    # every interleaving once: each run follows a plan, then the first actor left; every
    # other actor it could have taken at a step past its plan is a plan of its own
    plans: list[list[str]] = [[]]
    while plans:
        plan = plans.pop()
        trace = await run(plan)
        for i in range(len(plan), len(trace)):
            taken, could = trace[i]
            plans += [[name for name, _ in trace[:i]] + [other] for other in could if other != taken]
    assert runs >= 6  # (at least the orders of three actors of one step each)
