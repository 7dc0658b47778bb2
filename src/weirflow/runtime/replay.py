"""Resume a job from its journal: records in, a ``Restore`` out.

``LogJournal`` turns the runtime's journal calls into plain records (dicts, in
causal order). ``restore_from(records, flow)`` replays any prefix of them — what
a durable store had committed when the process died — into a ``Restore``:

- every item enqueued and not yet taken, dead-lettered or dropped is queued again,
  in order, also what an interrupted call had emitted (it was delivered);
- the items of a call that had started but not finished (the interrupted step) go
  back to the front of their slots, and the call runs again on them as the same
  step (its ``seq``) with ``ctx.attempt`` one higher; its emit at position *n* is
  not enqueued again into a slot that already got the same item from the
  interrupted attempts' *n*-th emit (``Step.delivered``, ``undelivered``);
- each routine's state is the one its last finished step left;
- outputs and dead letters recorded so far are kept (a call's final failure implies
  its dead letters), routines whose ``on_end`` finished do not run it again (an
  interrupted ``on_end`` runs again one attempt higher), and initial inputs not yet
  fed are fed.

docs/durability.md says what a user sees, also when a rerun emits differently.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from . import records
from .journal import INPUT, Journal, Step
from .records import Record
from .results import DeadLetter

if TYPE_CHECKING:
    from ..flow.graph import Flow
    from .job import Job
    from .results import JobStatus
    from .slot_queue import SlotQueue

#: what a call's attempts enqueued: position of the emit in the call -> slot path -> items
Delivered = dict[int, dict[str, list[Any]]]

log = structlog.get_logger("weirflow.replay")


@dataclass(slots=True)
class Rerun:
    """A call a crash interrupted, which the resumed job runs again: the same ``seq``,
    attempt ``attempt``. ``delivered``: what its interrupted attempts had enqueued
    (since its last failed attempt), ``position in emitted -> slot path -> [items]``."""

    routine: str
    seq: int
    attempt: int
    delivered: Delivered


@dataclass
class Restore:
    """What a restarted job starts from (see the module docstring). ``rerun_attempts``
    and ``reruns`` describe the first items of a slot, which interrupted calls took:
    their next attempt and the call; ``end_reruns`` the interrupted ``on_end`` calls."""

    queues: dict[str, list[Any]] = field(default_factory=dict)
    rerun_attempts: dict[str, list[int]] = field(default_factory=dict)
    reruns: dict[str, list[Rerun]] = field(default_factory=dict)
    end_reruns: dict[str, Rerun] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    fed: dict[str, int] = field(default_factory=dict)
    steps_done: int = 0


def undelivered(step: Step, targets: tuple[SlotQueue, ...], item: Any) -> tuple[SlotQueue, ...]:
    """The slots a rerun's emit of ``item`` (the last of ``step.emitted``) still goes to:
    those its interrupted attempts did not already give the same item at the same
    position in the step. An emit that differs (another item, another event) is
    delivered: what the earlier attempt delivered stays, nothing is lost."""
    delivered = step.delivered
    assert delivered is not None
    k = len(step.emitted) - 1
    went = delivered.get(k)
    if not went:
        return targets
    kept = tuple(q for q in targets if not any(_same(d, item) for d in went.get(q.path, ())))
    if len(targets) - len(kept) < len(went):
        log.warning(
            "rerun_emitted_differently",
            routine=step.routine,
            seq=step.seq,
            attempt=step.attempt,
            position=k,
            on_event=step.emitted[k][0],
            delivered_to=sorted(went),
            delivering_to=[q.path for q in kept],
        )
    return kept


def rerun_ended(step: Step) -> None:
    """A rerun finished: say so if it emitted fewer items than its interrupted attempts
    had delivered (those stay delivered)."""
    delivered = step.delivered
    assert delivered is not None
    beyond = sorted(k for k in delivered if k >= len(step.emitted))
    if beyond:
        log.warning(
            "rerun_emitted_fewer",
            routine=step.routine,
            seq=step.seq,
            attempt=step.attempt,
            emitted=len(step.emitted),
            delivered_before=len(step.emitted) + len(beyond),
        )


def _same(recorded: Any, item: Any) -> bool:
    """Whether a recorded item is ``item``: equal, or equal once ``item`` went through JSON as
    a durable journal's records did (a tuple comes back a list)."""
    try:
        if recorded == item:
            return True
        return bool(orjson.loads(orjson.dumps(item)) == recorded)
    except Exception:  # noqa: BLE001 - not comparable, or not JSON: not the same item
        return False


class LogJournal(Journal):
    """Keeps the job's journal as plain records; ``on_record`` sees each as it is made.

    A durable journal subclasses this, overriding ``add`` to serialise each record
    (items and state are live objects: they must be copied or serialised at once)
    and commit them in batches.
    """

    keeps_steps = False  # (each record is a copy)
    reads_times = False  # (no record holds a time)

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, job: Job, record: Record) -> None:
        self.records.append(copy.deepcopy(record))

    def job_restored(self, job: Job) -> None:
        self.add(job, records.RESUME)

    def job_ending(self, job: Job, status: JobStatus, error: str | None) -> None:
        self.add(job, records.end(status, error))

    def enqueued(self, job: Job, slot: str, item: Any, origin: Step | str | None) -> None:
        self.add(job, records.enq(slot, item, origin))

    def step_started(self, job: Job, step: Step) -> None:
        self.add(job, records.start(step))

    def step_completed(self, job: Job, step: Step) -> None:
        self.add(job, records.done(step))

    def dead_lettered(self, job: Job, letter: DeadLetter, *, from_queue: bool) -> None:
        self.add(job, records.dead_letter(letter, queued=from_queue, of_input=job.letters.refusing_input))


class _Replay:
    """The queues, open steps and results of a journal replayed so far."""

    def __init__(self, flow: Flow) -> None:
        # per slot: (item, origin, rerun) in queue order; ``rerun`` is the interrupted
        # call ``(routine, seq, attempt)`` the item goes back to, ``None`` for a new item
        self.queues: dict[str, deque[tuple[Any, Any, tuple[str, int, int] | None]]] = {
            p: deque() for p in flow.slot_paths()
        }
        # calls started and not finished: (routine, seq) -> (attempt, [(slot, item)])
        self.open: dict[tuple[str, int], tuple[int, list[tuple[str, Any]]]] = {}
        # what the attempts of an open call enqueued since its last failed attempt:
        # (routine, seq) -> (position in its emitted, slot) -> items
        self.delivered: dict[tuple[str, int], Delivered] = {}
        # on_end calls interrupted and not yet started again: routine -> (seq, attempt)
        self.ends: dict[str, tuple[int, int]] = {}
        # dead letters a call's final failure implies, whose own records should follow:
        # (slot, reason, index in out.dead_letters)
        self.implied: deque[tuple[str, str, int]] = deque()
        self.outputs = set(flow.outputs)
        self.out = Restore()

    def apply(self, rec: Record) -> None:
        if self.implied and rec["t"] != "dl":
            self.implied.clear()
        if rec["t"] == "enq":
            self.enq(rec)
        elif rec["t"] == "start":
            self.start(rec)
        elif rec["t"] == "done":
            self.done(rec)
        elif rec["t"] == "dl":
            self.dead_letter(rec)

    def enq(self, rec: records.EnqRecord) -> None:
        by: Any = rec["by"]
        slot = rec["slot"]
        if isinstance(by, list):
            by = tuple(by)
            if len(by) == 3:  # (routine, seq, position): a step's emit
                went = self.delivered.setdefault((by[0], by[1]), {}).setdefault(by[2], {})
                went.setdefault(slot, []).append(rec["item"])
        self.queues[slot].append((rec["item"], by, None))
        if by == INPUT:
            self.out.fed[slot] = self.out.fed.get(slot, 0) + 1

    def start(self, rec: records.StartRecord) -> None:
        routine, seqs = rec["routine"], self.out.seqs
        key = (routine, rec["seq"])
        seqs[routine] = max(seqs.get(routine, 0), rec["seq"])
        if key in self.open:  # a retry of an open call
            self.open[key] = (rec["attempt"], self.open[key][1])
            return
        if not rec["consumed"]:  # on_end (every handler call takes an item)
            self.ends.pop(routine, None)
        taken = []
        for name in rec["consumed"]:
            path = f"{routine}.{name}"
            item, _, _ = self.queues[path].popleft()
            taken.append((path, item))
        self.open[key] = (rec["attempt"], taken)

    def done(self, rec: records.DoneRecord) -> None:
        routine, out = rec["routine"], self.out
        key = (routine, rec["seq"])
        self.delivered.pop(key, None)  # (after a failed attempt, the retry emits everything again)
        if rec["status"] != "completed" and not rec["final"]:
            return
        _, taken = self.open.pop(key, (0, []))
        if rec["status"] != "completed":
            self.failed(rec, taken)
        out.steps_done += 1
        out.states[routine] = rec["state"]
        if rec["on_end"]:
            out.ended.add(routine)
        for event, item in rec["emitted"]:
            path = f"{routine}.{event}"
            if path in self.outputs:
                out.outputs.setdefault(path, []).append(item)

    def dead_letter(self, rec: records.DeadLetterRecord) -> None:
        letter = DeadLetter(rec["slot"], rec["item"], rec["reason"], rec["error"], rec["at"])
        implied = self.implied
        if implied and not rec["queued"] and implied[0][:2] == (rec["slot"], rec["reason"]):
            self.out.dead_letters[implied.popleft()[2]] = letter  # the record of an implied one
            return
        if rec["queued"]:
            self.queues[rec["slot"]].popleft()
        elif rec.get("input"):  # a starting input its slot refused: fed, like an ``enq``
            self.out.fed[rec["slot"]] = self.out.fed.get(rec["slot"], 0) + 1
        self.out.dead_letters.append(letter)

    def failed(self, rec: records.DoneRecord, taken: list[tuple[str, Any]]) -> None:
        """A call failed for good: its items are dead letters. Their own records follow the
        ``done`` at once, but a crash may have come between: the ``done`` implies them."""
        out, error = self.out, rec["error"]
        now = time.time()  # (the records that follow, if any, have the real time)
        if taken:
            letters = [DeadLetter(path, item, "handler_failed", error, now) for path, item in taken]
        else:
            letters = [DeadLetter(f"{rec['routine']}.on_end", None, "on_end_failed", error, now)]
        for letter in letters:
            self.implied.append((letter.slot, letter.reason, len(out.dead_letters)))
            out.dead_letters.append(letter)

    def reopen(self) -> None:
        """Calls that started and did not finish go back to the front of their slots, one
        attempt higher (the same ``seq``); what they had enqueued stays where it is, and
        their rerun does not deliver it again (``Step.delivered``)."""
        legacy = set(self.open)  # journals of older versions: emits without a position
        front: dict[str, list[tuple[Any, Any, tuple[str, int, int] | None]]] = {}
        for (routine, seq), (attempt, taken) in self.open.items():
            if not taken:
                self.ends[routine] = (seq, attempt + 1)
            for path, item in taken:
                front.setdefault(path, []).append((item, None, (routine, seq, attempt + 1)))
        for path, q in self.queues.items():
            if any(isinstance(by, tuple) and by in legacy for _, by, _ in q):
                # older records: the rerun emits those again (at-least-once for what was taken)
                q = deque(e for e in q if not (isinstance(e[1], tuple) and e[1] in legacy))
            self.queues[path] = deque(front.get(path, []) + list(q)) if path in front else q
        self.open.clear()

    def rerun(self, routine: str, seq: int, attempt: int) -> Rerun:
        went = self.delivered.get((routine, seq), {})
        copied = {k: {path: list(items) for path, items in at.items()} for k, at in went.items()}
        return Rerun(routine, seq, attempt, copied)

    def restore(self) -> Restore:
        self.reopen()
        out = self.out
        made: dict[tuple[str, int, int], Rerun] = {}
        for path, q in self.queues.items():
            if not q:
                continue
            out.queues[path] = [item for item, _, _ in q]
            leading: list[Rerun] = []
            for _, _, key in q:
                if key is None:
                    break
                if key not in made:
                    made[key] = self.rerun(*key)
                leading.append(made[key])
            if leading:
                out.reruns[path] = leading
                out.rerun_attempts[path] = [r.attempt for r in leading]
        for routine, (seq, attempt) in self.ends.items():
            if routine not in out.ended:
                out.end_reruns[routine] = self.rerun(routine, seq, attempt)
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
        q = job.queue(path)
        q.restore(items, restore.reruns.get(path, []))
    for name, state in restore.states.items():
        runner = job.runner(name)
        runner.state.clear()
        runner.state.update(state)
    for name, seq in restore.seqs.items():
        job.runner(name).seq = seq
    for name in restore.ended:
        job.runner(name).on_end_done = True
    for name, rerun in restore.end_reruns.items():
        job.runner(name).end_rerun = rerun
    for path, items in restore.outputs.items():
        if path in job.outputs:
            job.outputs[path].extend(items)
    job.letters.restore(restore.dead_letters)
