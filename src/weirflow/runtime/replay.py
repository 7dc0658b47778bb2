"""Resume a job from its journal: records in, a ``Restore`` out.

``LogJournal`` turns the runtime's journal calls into plain records (dicts, in
causal order). ``restore_from(records, flow)`` replays any prefix of them — what
a durable store had committed when the process died — into a ``Restore``:

- every item enqueued and not yet taken, dead-lettered or dropped is queued again,
  in order;
- the items of a call that had started but not finished (the interrupted step) go
  back to the front of their slots, and the call runs again with ``ctx.attempt``
  one higher; what that call had emitted and nobody had taken yet is discarded (it
  will be emitted again), what was already taken stays taken;
- each routine's state is the one its last finished step left;
- outputs and dead letters recorded so far are kept, routines whose ``on_end``
  finished do not run it again, and initial inputs not yet fed are fed.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .journal import INPUT, Journal, Step
from .results import DeadLetter

if TYPE_CHECKING:
    from ..flow.graph import Flow
    from .job import Job
    from .results import JobStatus

Record = dict[str, Any]


@dataclass
class Restore:
    """What a restarted job starts from (see the module docstring)."""

    queues: dict[str, list[Any]] = field(default_factory=dict)
    rerun_attempts: dict[str, list[int]] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    fed: dict[str, int] = field(default_factory=dict)
    steps_done: int = 0


def _origin(origin: Step | str | None) -> list[Any] | str | None:
    if isinstance(origin, Step):
        return [origin.routine, origin.seq]
    return origin


class LogJournal(Journal):
    """Keeps the job's journal as plain records; ``on_record`` sees each as it is made.

    A durable journal subclasses this, overriding ``add`` to serialise each record
    (items and state are live objects: they must be copied or serialised at once)
    and commit them in batches.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, job: Job, record: Record) -> None:
        self.records.append(copy.deepcopy(record))

    def job_restored(self, job: Job) -> None:
        self.add(job, {"t": "resume"})

    def job_ending(self, job: Job, status: JobStatus, error: str | None) -> None:
        self.add(job, {"t": "end", "status": status.value, "error": error})

    def enqueued(self, job: Job, slot: str, item: Any, origin: Step | str | None) -> None:
        self.add(job, {"t": "enq", "slot": slot, "item": item, "by": _origin(origin)})

    def step_started(self, job: Job, step: Step) -> None:
        self.add(
            job,
            {
                "t": "start",
                "routine": step.routine,
                "seq": step.seq,
                "attempt": step.attempt,
                "consumed": [name for name, _ in step.consumed],
            },
        )

    def step_completed(self, job: Job, step: Step) -> None:
        self.add(
            job,
            {
                "t": "done",
                "routine": step.routine,
                "seq": step.seq,
                "attempt": step.attempt,
                "status": step.status,
                "final": step.final,
                "on_end": step.on_end,
                "state": step.state,
                "emitted": [[event, item] for event, item in step.emitted],
                "error": step.error,
            },
        )

    def dead_lettered(self, job: Job, letter: DeadLetter, *, from_queue: bool) -> None:
        self.add(
            job,
            {
                "t": "dl",
                "slot": letter.slot,
                "item": letter.item,
                "reason": letter.reason,
                "error": letter.error,
                "at": letter.at,
                "queued": from_queue,
            },
        )


class _Replay:
    """The queues, open steps and results of a journal replayed so far."""

    def __init__(self, flow: Flow) -> None:
        # per slot: (item, origin, attempt) in queue order
        self.queues: dict[str, deque[tuple[Any, Any, int]]] = {p: deque() for p in flow.slot_paths()}
        self.open: dict[tuple[str, int], tuple[int, list[tuple[str, Any, int]]]] = {}
        self.outputs = set(flow.outputs)
        self.out = Restore()

    def apply(self, rec: Record) -> None:
        kind, out = rec["t"], self.out
        if kind == "enq":
            by = rec["by"]
            self.queues[rec["slot"]].append((rec["item"], tuple(by) if isinstance(by, list) else by, 1))
            if by == INPUT:
                out.fed[rec["slot"]] = out.fed.get(rec["slot"], 0) + 1
        elif kind == "start":
            key = (rec["routine"], rec["seq"])
            out.seqs[rec["routine"]] = max(out.seqs.get(rec["routine"], 0), rec["seq"])
            if key in self.open:
                self.open[key] = (rec["attempt"], self.open[key][1])
                return
            taken = []
            for name in rec["consumed"]:
                path = f"{rec['routine']}.{name}"
                item, _, attempt = self.queues[path].popleft()
                taken.append((path, item, attempt))
            self.open[key] = (rec["attempt"], taken)
        elif kind == "done":
            if rec["status"] == "completed" or rec["final"]:
                self.open.pop((rec["routine"], rec["seq"]), None)
                out.steps_done += 1
                out.states[rec["routine"]] = rec["state"]
                if rec["on_end"]:
                    out.ended.add(rec["routine"])
                for event, item in rec["emitted"]:
                    path = f"{rec['routine']}.{event}"
                    if path in self.outputs:
                        out.outputs.setdefault(path, []).append(item)
        elif kind == "dl":
            if rec["queued"]:
                self.queues[rec["slot"]].popleft()
            out.dead_letters.append(
                DeadLetter(rec["slot"], rec["item"], rec["reason"], rec["error"], rec["at"])
            )

    def reopen(self) -> None:
        """Calls that started and did not finish go back to the front of their slots, one
        attempt higher; what they emitted that nobody took is dropped (emitted again)."""
        interrupted = set(self.open)
        for path, q in self.queues.items():
            kept = [(item, by, a) for item, by, a in q if not (isinstance(by, tuple) and by in interrupted)]
            front = [
                (item, None, attempt + 1)
                for attempt, taken in self.open.values()
                for p, item, _ in taken
                if p == path
            ]
            self.queues[path] = deque(front + kept)
        self.open.clear()

    def restore(self) -> Restore:
        self.reopen()
        out = self.out
        for path, q in self.queues.items():
            if q:
                out.queues[path] = [item for item, _, _ in q]
                attempts = [a for _, _, a in q]
                k = next((i for i, a in enumerate(attempts) if a == 1), len(attempts))
                if k:
                    out.rerun_attempts[path] = attempts[:k]
        return out


def restore_from(records: list[Record], flow: Flow) -> Restore:
    """Replay ``records`` (any prefix of a ``LogJournal``'s) into a ``Restore``.

    The records are not modified; the ``Restore`` holds copies of their items and state.
    Records between a job's ``end`` and the next ``resume`` (its clean-up) are skipped;
    at each ``resume`` the replay reopens interrupted calls exactly as the resumed job did.
    """
    replay = _Replay(flow)
    cleanup = False
    for rec in copy.deepcopy(records):
        kind = rec["t"]
        if kind == "end":
            cleanup = True
        elif kind == "resume":
            cleanup = False
            replay.reopen()
        elif not cleanup:
            replay.apply(rec)
    return replay.restore()


def apply_restore(job: Job, restore: Restore) -> None:
    """Make a new job start from a journal's replay instead of from nothing."""
    for path, items in restore.queues.items():
        q = job._queue(path)
        q.items.extend(items)
        q.enqueued += len(items)
        q.high_water = max(q.high_water, len(items))
        q.rerun_attempts.extend(restore.rerun_attempts.get(path, []))
    for name, state in restore.states.items():
        runner = job._runner(name)
        runner.state.clear()
        runner.state.update(state)
    for name, seq in restore.seqs.items():
        job._runner(name).seq = seq
    for name in restore.ended:
        job._runner(name).on_end_done = True
    for path, items in restore.outputs.items():
        if path in job.outputs:
            job.outputs[path].extend(items)
    job.dead_letters.extend(restore.dead_letters)
