"""Whether a paused job can still move: what a debugger step waits on.

While a job is paused for a step, only some routines may start calls (the stepped
one, and the consumers of slots where a call waits for room: ``Job.may_run``). The
step ends at the stepped routine's next hook point — or never, if nothing can move
any more. These functions let the debugger see that moment without polling: it
waits for the job to go quiet (``next_quiet``) and then asks ``stalled``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import Job
    from .runner import RoutineRunner


async def next_quiet(job: Job) -> None:
    """Wait for the next moment every running call of ``job`` is parked (waiting for
    room, held by a hook or backing off) or has ended, or the job finishes."""
    fut = job.quiet_waiter()
    try:
        await fut
    finally:
        job.drop_quiet_waiter(fut)


def _may_start(job: Job, runner: RoutineRunner) -> bool:
    return runner.running_calls() < runner.concurrency and job.may_run(runner) and runner.has_work()


def stalled(job: Job) -> bool:
    """Whether the paused job cannot move by itself: no call runs, no emitter was given
    room it has not used yet, and no routine that may run has an item it could take.

    ``False`` for a job that is not paused or has finished. A routine that may start a
    call is woken, so that ``False`` always means the job will move (and go quiet again).
    A call backing off before a retry is parked too: it is not told apart.
    """
    if job.finished or not job.paused or job.unparked() > 0:
        return False
    if any(q.room_given() for q in job.queue_list()):
        return False
    if any(_may_start(job, r) for r in job.runners.values()):
        job.wake_paused()
        return False
    return True


def blocking_slot(job: Job, routine: str) -> tuple[str, str] | None:
    """A slot where a call waits for room, and why it gets none: one fed by ``routine``
    if there is one (its own emit waits), else any (a held item it let go waits)."""
    fed = [f"{c.target}.{c.slot}" for c in job.flow.connections if c.source == routine]
    for path in [*fed, *(q.path for q in job.queue_list())]:
        q = job.queue(path)
        if q.calls_waiting():
            return q.path, _why_full(job, q.runner)
    return None


def _why_full(job: Job, consumer: RoutineRunner) -> str:
    name = consumer.name
    if consumer.paused:
        return f"routine {name!r} is paused"
    if consumer.running_calls() >= consumer.concurrency:
        for c in job.flow.connections:
            q = job.queue(f"{c.target}.{c.slot}")
            if c.source == name and q.calls_waiting():
                return f"routine {name!r} is busy: its call waits for room in {q.path!r}"
        return f"routine {name!r} is busy: its call is held"
    return f"routine {name!r} has no call ready"
