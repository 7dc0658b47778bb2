"""Journal: the runtime's record of a job, for durability.

The runtime reports every enqueue and every completed step (a handler call:
what it consumed, what it emitted, the routine's state after it) to the
engine's journal. ``Journal`` itself does nothing and the runtime skips it
entirely, so in-memory jobs pay nothing; a durable journal writes the records
to a store in batched transactions so a crashed job can resume from its last
committed step. Methods are awaited on the event loop: a journal that commits
in batches awaits the batch that holds the record.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import Job
    from .results import DeadLetter, JobResult, JobStatus


INPUT = "input"
"""``origin`` of an item enqueued by feeding a job's initial inputs."""


@dataclass(slots=True)
class Step:
    """One attempt of one handler call (or of ``on_end``): the unit a durable job
    resumes from. ``seq`` numbers the routine's calls in the job (retries of a call
    share it); ``consumed`` are ``(slot, item)`` taken from the front of the
    routine's slots when the call started; ``emitted`` are ``(event, item)``;
    ``final`` says no further attempt of this call follows. ``started_at`` is the
    time it was made. ``delivered`` is set on the attempt that a resumed job runs
    again after a crash interrupted the call: what the interrupted attempts had
    already enqueued, ``position in emitted -> slot path -> [items]``, which this
    attempt does not deliver again (``weirflow.runtime.replay``).
    ``traceback`` is the failed attempt's formatted traceback. ``emit_at`` is the
    position in ``emitted`` of the emit whose enqueue the journal is being told of:
    the runtime sets it just before each ``Journal.enqueued`` with this origin (the
    emit's position is taken when it is appended, so concurrent emits of one object,
    ``asyncio.gather``, each keep their own)."""

    routine: str
    seq: int
    attempt: int
    consumed: list[tuple[str, Any]]
    emitted: list[tuple[str, Any]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    error: str | None = None
    started_at: float = 0.0
    completed_at: float | None = None
    final: bool = False
    on_end: bool = False
    progress: float | None = None
    message: str = ""
    delivered: dict[int, dict[str, list[Any]]] | None = None
    traceback: str | None = None
    emit_at: int = -1

    def __init__(
        self, routine: str, seq: int, attempt: int, consumed: list[tuple[str, Any]], *, on_end: bool = False
    ) -> None:
        # written out (not generated): one is made per handler call of a durable job
        self.routine = routine
        self.seq = seq
        self.attempt = attempt
        self.consumed = consumed
        self.emitted = []
        self.state = {}
        self.status = "running"
        self.error = None
        self.started_at = time.time()
        self.completed_at = None
        self.final = False
        self.on_end = on_end
        self.progress = None
        self.message = ""
        self.delivered = None
        self.traceback = None
        self.emit_at = -1

    def position(self, item: Any) -> int:
        """Where ``item`` (just enqueued) is in ``emitted``: ``emit_at`` when the runtime set
        it; for a step made by hand, the last emit of that very object, else the last emit."""
        if self.emit_at >= 0:
            return self.emit_at
        emitted = self.emitted
        k = len(emitted) - 1
        if k >= 0 and emitted[k][1] is item:
            return k
        for i in range(k - 1, -1, -1):
            if emitted[i][1] is item:
                return i
        return k


class Journal:
    """Base class of journals; every method is a documented no-op.

    The data-path methods are plain (not coroutines) and must not block: a
    durable journal appends records to a buffer that it commits in batches. The
    records arrive in causal order, so any prefix of them describes a state the
    job really passed through.
    """

    #: whether this journal may hold on to a ``Step`` after ``step_completed`` returned
    #: (one that never does lets the runtime reuse one ``Step`` object for the calls a
    #: routine makes in a row: ``runtime.journal_run``)
    keeps_steps = True

    #: whether this journal reads a step's ``started_at`` and ``completed_at`` (one that
    #: never does spares the runtime a clock read per call in a run of calls:
    #: ``runtime.journal_run``; a ``Step`` it is told of may then hold stale times)
    reads_times = True

    async def job_started(self, job: Job) -> None:
        """The job was created and is about to run."""

    def job_restored(self, job: Job) -> None:
        """The job was started from a ``Restore`` (a replay of this journal); what follows
        continues that replay."""

    def job_ending(self, job: Job, status: JobStatus, error: str | None) -> None:
        """The job reached a final status; what is recorded after this is its clean-up
        (cancelled calls, dead-lettered queues), which a resumed job does not repeat."""

    def check(self, item: Any) -> None:
        """Raise (a ``WeirflowError``) if this journal cannot record ``item``; called before
        an emitted or sent item is enqueued, so the emitter gets the error."""

    def enqueued(self, job: Job, slot: str, item: Any, origin: Step | str | None) -> None:
        """``item`` was appended to ``slot``. ``origin`` is the ``Step`` that emitted it,
        ``INPUT`` for an initial input, ``None`` for a ``send``."""

    def emit_recorded(self, job: Job, slot: str, item: Any, step: Step) -> bool:
        """``check`` and ``enqueued(job, slot, item, step)`` in one, when this journal has a
        shorter way: ``item`` is the last of ``step.emitted`` (just appended), and the runtime
        appends it to ``slot`` (it has room) as soon as this returns, with nothing recorded
        and nothing run in between (``delivery.Route.emit_journaled_one``). Raises as
        ``check`` would (the runtime then takes the emit back); ``True``: the enqueue is
        recorded; ``False`` (this default): nothing was, and the runtime calls ``check`` and
        ``enqueued`` itself."""
        return False

    def inputs_enqueued(self, job: Job, slot: str, items: Sequence[Any]) -> bool:
        """``items`` are appended to ``slot``, in this order, as starting inputs, as soon as
        this returns ``True`` (in the same frame: nothing else is recorded in between):
        ``enqueued(job, slot, item, INPUT)`` for each, in one call. ``False`` when this
        journal records nothing of them (this default; or one of them cannot be recorded):
        the caller then feeds them one by one, calling ``enqueued``. Only the runtime's own
        journals override it (a journal that overrides ``enqueued`` needs nothing more)."""
        return False

    def step_started(self, job: Job, step: Step) -> None:
        """An attempt starts; on the first attempt its ``consumed`` items just left the
        front of their slots. Raising ``asyncio.CancelledError`` (a subclass of it) refuses
        the start: the handler does not run, and the call's items settle as a cancelled
        call's (a durable worker that may no longer own the job: ``durable.steps``)."""

    def step_progress(self, job: Job, step: Step) -> None:
        """The running step reported ``ctx.progress`` (``step.progress``, ``step.message``)."""

    def step_completed(self, job: Job, step: Step) -> None:
        """An attempt ended: ``status`` is ``completed`` or ``failed``; ``state`` is a shallow
        copy of the routine's state (values are live: serialise before returning)."""

    def step_completed_ending(self, job: Job, step: Step, status: JobStatus) -> None:
        """``step_completed(job, step)`` then ``job_ending(job, status, None)``, in one call, by
        a caller that closes the job with that status in the same frame: ``job_finished_now``
        follows with nothing awaited and nothing else recorded in between (the durable
        worker's lane, ``durable.worker_lane``). This default makes the two calls, the second
        unless recording the step ended the job (a record a journal could not make fails
        it, and its end is told then); a journal that drops a completed job's records at its
        end may skip making them."""
        self.step_completed(job, step)
        if not job.finished:
            self.job_ending(job, status, None)

    def call_completed(self, job: Job, step: Step) -> bool:
        """``step_completed`` for the common case, when this journal has a shorter way to
        record it: ``step`` (the first attempt of one call that took one item, made in a
        run of calls, ``runtime.journal_run``) completed, final, with no error and no state,
        though its ``status``, ``final`` and ``completed_at`` still say it runs (they are
        not set for this call). ``True``: it is recorded, as ``step_completed`` would have;
        ``False`` (this default): nothing was recorded, and the runtime sets those fields
        and calls ``step_completed``."""
        return False

    def shortcuts(self, name: str) -> bool:
        """Whether this journal has the short way ``name`` (``"emit_recorded"``,
        ``"call_completed"``): the runtime takes it only then (a ``Journals`` has it when
        one of its members does)."""
        return overrides(self, name)

    def dead_lettered(self, job: Job, letter: DeadLetter, *, from_queue: bool) -> None:
        """An item was dead-lettered; ``from_queue``: it was taken off the front of its
        slot's queue (otherwise it never entered it, or was in a step)."""

    async def job_finished(self, job: Job, result: JobResult) -> None:
        """The job reached a final status and its result is made (``job.wait()`` returns it
        once this returns). A journal with nothing to await here overrides
        ``job_finished_now`` instead (this calls it), which lets the job close in the frame
        that ended it, with no task (``finish_awaits``)."""
        self.job_finished_now(job, result)

    def job_finished_now(self, job: Job, result: JobResult) -> None:
        """``job_finished`` as a plain method (it must not block): called in its place, in the
        frame that closes the job, unless ``finish_awaits``. Comes after every other record
        of the job, as ``job_finished`` does."""

    def finish_awaits(self) -> bool:
        """Whether the runtime must await ``job_finished`` at a job's end: it is overridden.
        Otherwise the runtime may call ``job_finished_now`` where the job closes, and a
        job that nothing else holds closes at once (``Job._quiet``). Asked once per job."""
        return type(self).job_finished is not Journal.job_finished

    def lagging(self) -> Awaitable[None] | None:
        """What a routine awaits before its next call when this journal has fallen
        behind (it holds more records than it has committed); ``None`` when it has not.
        Asked before every call: keep it cheap."""
        return None


def overrides(journal: Journal, name: str) -> bool:
    """Whether ``journal``'s class has its own ``name`` (not ``Journal``'s no-op)."""
    return getattr(type(journal), name) is not getattr(Journal, name)


def is_active(journal: Journal | None) -> bool:
    """Whether the runtime must report to ``journal`` (it overrides something)."""
    if journal is None:
        return False
    kind = type(journal)
    return any(
        getattr(kind, name) is not getattr(Journal, name)
        for name in (
            "job_started",
            "job_restored",
            "job_ending",
            "check",
            "enqueued",
            "step_started",
            "step_progress",
            "step_completed",
            "dead_lettered",
            "job_finished",
            "job_finished_now",
        )
    )


class Journals(Journal):
    """Several journals as one (the engine has one journal slot), called in order.

    The short ways (``emit_recorded``, ``call_completed``) are forwarded: a member that
    has one is told the short way, the others the general way, so each member records
    what it records alone (a durable worker's journals: its step rows or start fence, and
    its durable journal). Members whose method of a kind is ``Journal``'s (a no-op) are
    not called for it."""

    def __init__(self, *journals: Journal) -> None:
        self.journals = [j for j in journals if is_active(j)]
        self.keeps_steps = any(j.keeps_steps for j in self.journals)
        self.reads_times = any(j.reads_times for j in self.journals)
        members = self.journals
        # the members told of emits (a check, an enqueue) and of step ends
        emits = ("check", "enqueued", "emit_recorded")
        self._emits = [j for j in members if any(overrides(j, m) for m in emits)]
        self._ends = [j for j in members if overrides(j, "step_completed") or overrides(j, "call_completed")]
        self._checks = [j.check for j in members if overrides(j, "check")]
        self._enqueues = [j.enqueued for j in members if overrides(j, "enqueued")]
        self._starts = [j.step_started for j in members if overrides(j, "step_started")]
        # one member records emits, or steps' ends: it is told directly
        self._one_emits = self._emits[0] if len(self._emits) == 1 else None
        self._one_end = self._ends[0] if len(self._ends) == 1 else None

    def shortcuts(self, name: str) -> bool:
        if name == "emit_recorded":
            return any(j.shortcuts(name) for j in self._emits)
        return any(j.shortcuts(name) for j in self._ends) if name == "call_completed" else False

    async def job_started(self, job: Job) -> None:
        for j in self.journals:
            await j.job_started(job)

    def job_restored(self, job: Job) -> None:
        for j in self.journals:
            j.job_restored(job)

    def job_ending(self, job: Job, status: JobStatus, error: str | None) -> None:
        for j in self.journals:
            j.job_ending(job, status, error)

    def check(self, item: Any) -> None:
        for check in self._checks:
            check(item)

    def enqueued(self, job: Job, slot: str, item: Any, origin: Step | str | None) -> None:
        for enqueued in self._enqueues:
            enqueued(job, slot, item, origin)

    def emit_recorded(self, job: Job, slot: str, item: Any, step: Step) -> bool:
        one = self._one_emits
        if one is not None:
            return one.emit_recorded(job, slot, item, step)
        if not self._emits:
            return True  # (nothing to record)
        for check in self._checks:  # (first all: a refusal leaves nothing recorded)
            check(item)
        for j in self._emits:  # (each its short way, if it has one: ``item`` passed its check)
            if not j.emit_recorded(job, slot, item, step):
                step.emit_at = len(step.emitted) - 1  # (as ``Route.emit_journaled`` sets it)
                j.enqueued(job, slot, item, step)
        return True

    def inputs_enqueued(self, job: Job, slot: str, items: Sequence[Any]) -> bool:
        # (in one call only when a single one of them records enqueues: no partial record)
        told = [j for j in self.journals if type(j).enqueued is not Journal.enqueued]
        if not told:
            return True
        return len(told) == 1 and told[0].inputs_enqueued(job, slot, items)

    def step_started(self, job: Job, step: Step) -> None:
        for started in self._starts:
            started(job, step)

    def step_progress(self, job: Job, step: Step) -> None:
        for j in self.journals:
            j.step_progress(job, step)

    def step_completed(self, job: Job, step: Step) -> None:
        for j in self._ends:
            j.step_completed(job, step)

    def call_completed(self, job: Job, step: Step) -> bool:
        """Each member the short way if it takes it; the first that does not gets the step
        with its end set as the runtime sets it (status, ``final``, the time), and it and
        every later one that does not are told by ``step_completed``."""
        one = self._one_end
        if one is not None:  # (``False``: the runtime tells it by ``step_completed``)
            return one.call_completed(job, step)
        ended = False
        for j in self._ends:
            if j.call_completed(job, step):
                continue
            if not ended:  # (``RoutineRunner``'s end of such a call: no state, no error)
                step.status = "completed"
                step.final = True
                step.completed_at = time.time()
                ended = True
            j.step_completed(job, step)
        return True

    def step_completed_ending(self, job: Job, step: Step, status: JobStatus) -> None:
        for j in self.journals:
            j.step_completed_ending(job, step, status)

    def dead_lettered(self, job: Job, letter: DeadLetter, *, from_queue: bool) -> None:
        for j in self.journals:
            j.dead_lettered(job, letter, from_queue=from_queue)

    async def job_finished(self, job: Job, result: JobResult) -> None:
        for j in self.journals:  # (each calls its ``job_finished_now`` unless it awaits)
            await j.job_finished(job, result)

    def job_finished_now(self, job: Job, result: JobResult) -> None:
        for j in self.journals:
            j.job_finished_now(job, result)

    def finish_awaits(self) -> bool:
        return any(j.finish_awaits() for j in self.journals)

    def lagging(self) -> Awaitable[None] | None:
        for j in self.journals:
            lag = j.lagging()
            if lag is not None:
                return lag
        return None
