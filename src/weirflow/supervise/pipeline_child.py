"""What runs in a pipeline's child process: one long-running job of a flow.

``main(channel, {"flows": source})`` loads the flows (a ``--flows`` source, or
pickled ``Flow`` objects), opens an ``Engine`` and says it is ready: that is a warm
spare. ``run`` (``{"flow", "inputs", "credit"}``) starts the job with
``keep_open=True``; from then on the child answers, each in a task of its own and
so concurrently with the job:

- ``status`` → ``{"status", "paused", "queues": {"r.slot": QueueStats dict}}``;
- ``pause`` / ``resume``; ``send`` (``{"slot", "item", "timeout_s", "seq"}``, waits
  while the slot is full); ``drain`` (closes the input and waits until the job has
  finished everything it holds).

A sent item is acknowledged once it is finished: ``acked`` (``[seq, ...]``) when its
handler returned, ``dead_letter`` (``{"seq", "slot", "item", "reason", "error"}``)
when the job dead-lettered it (the job's other dead letters go the same way, with
``seq`` None). Whatever the supervisor has no word about when the child ends was not
finished (``weirflow.supervise.sends``).

Outputs (the flow's output events) go to the supervisor as ``output``
notifications, one per item, each spending one credit; the supervisor gives credits
back (``credit`` notifications) as its results buffer is consumed. Without credit
the emitting routine waits in its ``emit`` — the pipeline's output blocks, nothing
is dropped. The child exits 0 when the job completed and 1 when it failed or was
cancelled; it says so first with a ``finished`` notification.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from ..errors import (
    FlowError,
    FrameError,
    InputClosedError,
    InvalidCommand,
    JobError,
    JobFinishedError,
    NotPausedError,
    PipelineStateError,
    SlotFullError,
    UnknownSlotError,
)
from ..flow.graph import Flow
from ..flow.source import load_flows
from ..runtime.engine import Engine
from ..runtime.hooks import HookPoint, Hooks
from ..runtime.job import Job
from ..runtime.results import DeadLetter, JobStatus
from .channel import Channel

ENTRY = "weirflow.supervise.pipeline_child:main"


class _Credit:
    """Outputs the supervisor has room for; ``take`` waits for one."""

    def __init__(self) -> None:
        self._room = asyncio.Semaphore(0)

    def give(self, n: int) -> None:
        for _ in range(int(n)):
            self._room.release()

    async def take(self) -> None:
        await self._room.acquire()


class _Outputs(Hooks):
    """Sends every item of a flow output to the supervisor, waiting for credit."""

    fatal = True  # an output that cannot reach the supervisor must not vanish quietly

    def __init__(self, channel: Channel, paths: set[str], credit: _Credit) -> None:
        self.channel = channel
        self.paths = paths
        self.credit = credit

    def watches(self, point: str, target: str) -> bool:
        return point == "on_emit" and target in self.paths

    async def on_emit(self, point: HookPoint) -> None:
        if point.event not in self.paths:
            return
        await self.credit.take()
        try:
            await self.channel.notify("output", (point.event, point.item))
        except FrameError as e:
            self.credit.give(1)
            await self.channel.notify("output_refused", (point.event, str(e)))
        # a pipeline runs for ever: the job's own output list would only grow (the item is
        # appended there after this hook); the supervisor's results buffer holds it instead
        outputs = point.job.outputs.get(point.event)
        if outputs:
            outputs.clear()


class _Acks(Hooks):
    """Tells the supervisor when an item it sent is finished: its handler returned
    (``acked``, with the items' ``seq``: through ``_Ends``), or the job dead-lettered it
    (``dead_letter``, with its ``seq``; the job's other dead letters go too, with ``seq``
    None). Written synchronously, so an item the supervisor has no word about was not
    finished.

    An item is known by the object the handler receives (``id``), with its routine; two
    sent items that are the same object (a small int, ``None``) are told apart by order,
    and an equal object a routine emitted into the same routine may stand for one."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.pending: dict[tuple[str, int], deque[tuple[int, Any]]] = {}

    def watches(self, point: str, target: str) -> bool:
        return False  # no item hook point: only the two notifications below

    def sent(self, routine: str, item: Any, seq: int) -> None:
        self.pending.setdefault((routine, id(item)), deque()).append((seq, item))

    def _pop(self, routine: str, item: Any) -> int | None:
        key = (routine, id(item))
        waiting = self.pending.get(key)
        if not waiting:
            return None
        seq, _ = waiting.popleft()
        if not waiting:
            del self.pending[key]
        return seq

    def refused(self, routine: str, item: Any, seq: int) -> None:
        waiting = self.pending.get((routine, id(item)))
        if waiting:
            with contextlib.suppress(ValueError):
                waiting.remove((seq, item))
            if not waiting:
                del self.pending[(routine, id(item))]

    def ended(self, routine: str, item: Any, error: BaseException | None) -> None:
        if error is not None or not self.pending:
            return  # (a failed call is retried, dead-lettered, or fails the job: not done yet)
        seq = self._pop(routine, item)
        seqs = [seq] if seq is not None else []
        if seq is None and isinstance(item, (list, tuple)):  # a batch or a join
            seqs = [s for s in (self._pop(routine, one) for one in item) if s is not None]
        if seqs:
            self.channel.notify_now("acked", seqs)

    def on_dead_letter(self, job: Job, letter: DeadLetter) -> None:
        seq = None
        if self.pending:
            with contextlib.suppress(UnknownSlotError):
                seq = self._pop(job.queue(letter.slot).runner.name, letter.item)
        body = {"seq": seq, "slot": letter.slot, "reason": letter.reason, "error": letter.error}
        try:
            self.channel.notify_now("dead_letter", {**body, "item": letter.item})
        except FrameError:  # an item the job made that cannot cross: its text, at least
            self.channel.notify_now("dead_letter", {**body, "item": repr(letter.item)})


class _Ends(Hooks):
    """``_Acks``' view of handler ends. Attached at the first send only: a hook on
    handler ends takes every routine off the runner's fast path (it halves a plain
    chain's rate, ``benchmarks/pipeline_acks.py``), which a pipeline that is never sent
    anything need not pay."""

    #: a plain ``def`` routine's worker thread waits until each end is here: batched, the
    #: acknowledgements of up to ``threads.END_BATCH`` finished items would still be in
    #: the child when it is killed, and those items dead-lettered although they finished
    ends_now = True

    def __init__(self, acks: _Acks) -> None:
        self.acks = acks

    def watches(self, point: str, target: str) -> bool:
        return False

    def on_handler_end(
        self, job: Job, routine: str, item: Any, error: BaseException | None, duration_s: float
    ) -> None:
        self.acks.ended(routine, item, error)


def _flows(source: Any) -> dict[str, Flow]:
    flows = load_flows(source) if isinstance(source, str) else list(source)
    return {f.name: f for f in flows}


class _Pipeline:
    def __init__(self, channel: Channel, engine: Engine, flows: dict[str, Flow]) -> None:
        self.channel = channel
        self.engine = engine
        self.flows = flows
        self.job: Job | None = None
        self.credit = _Credit()
        self.acks = _Acks(channel)
        self.ends: _Ends | None = None
        self.started = asyncio.get_running_loop().create_future()
        channel.handle("run", self.run)
        channel.handle("status", self.status)
        channel.handle("pause", self.pause)
        channel.handle("resume", self.resume)
        channel.handle("send", self.send)
        channel.handle("drain", self.drain)
        channel.on_notification("credit", self.credit.give)

    def _job(self) -> Job:
        if self.job is None:
            raise PipelineStateError("the pipeline's job has not started", "starting")
        return self.job

    async def run(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.job is not None:
            raise PipelineStateError("the pipeline's job is already running", "running")
        flow = self.flows.get(body["flow"])
        if flow is None:
            known = ", ".join(sorted(self.flows)) or "none"
            raise InvalidCommand(f"no flow named {body['flow']!r} (flows: {known})")
        self.credit.give(int(body.get("credit", 0)))
        hook = _Outputs(self.channel, set(flow.outputs), self.credit)
        try:
            self.job = await self.engine.start(
                flow, body.get("inputs") or {}, keep_open=True, hooks=[hook, self.acks]
            )
        except (UnknownSlotError, FlowError) as e:
            raise InvalidCommand(str(e)) from None
        self.started.set_result(self.job)
        return {"job_id": self.job.id}

    async def status(self, body: Any) -> dict[str, Any]:
        job = self.job
        if job is None:
            return {"status": "pending", "paused": False, "queues": {}}
        queues = {path: stats.to_dict() for path, stats in job.queues().items()}
        return {"status": job.status.value, "paused": job.paused, "queues": queues}

    async def pause(self, body: Any) -> dict[str, Any]:
        job = self._job()
        if job.paused:
            raise PipelineStateError("the pipeline is already paused", "paused")
        try:
            point = await job.pause("pipeline paused", timeout_s=(body or {}).get("timeout_s"))
        except JobFinishedError as e:
            raise PipelineStateError(str(e)) from None
        except JobError as e:  # paused, but calls still running past the timeout
            return {"paused": True, "warning": str(e)}
        return {"paused": True, "at": point.at}

    async def resume(self, body: Any) -> dict[str, Any]:
        try:
            report = await self._job().resume()
        except (NotPausedError, JobFinishedError) as e:
            raise PipelineStateError(str(e)) from None
        return {"paused": False, "warnings": report.warnings}

    async def send(self, body: dict[str, Any]) -> int:
        job = self._job()
        slot, item, seq = body["slot"], body["item"], body.get("seq")
        try:
            routine = job.queue(slot).runner.name
        except UnknownSlotError as e:
            raise InvalidCommand(str(e)) from None
        if seq is not None:  # known before it can reach the handler
            if self.ends is None:
                self.ends = _Ends(self.acks)
                job.add_hooks(self.ends)
            self.acks.sent(routine, item, seq)
        try:
            await job.send(slot, item, timeout_s=body.get("timeout_s"))
        except BaseException as e:
            if seq is not None:
                self.acks.refused(routine, item, seq)
            if isinstance(e, (InputClosedError, JobFinishedError)):
                raise PipelineStateError(str(e)) from None
            if isinstance(e, SlotFullError):
                raise PipelineStateError(str(e), "full") from None
            raise
        return 1

    async def drain(self, body: Any) -> str:
        job = self._job()
        if job.paused:
            await job.resume()
        if not job.input_closed and not job.finished:
            await job.close_input()
        result = await job.wait()
        return result.status.value


async def main(channel: Channel, arg: dict[str, Any]) -> int:
    """A pipeline child's life (see the module docstring)."""
    flows = _flows(arg["flows"])
    async with Engine() as engine:
        pipeline = _Pipeline(channel, engine, flows)
        await channel.ready({"flows": sorted(flows)})
        job = await pipeline.started
        result = await job.wait()
        await channel.notify("finished", {"status": result.status.value, "error": result.error})
        await channel.settle(timeout_s=1.0)  # answer a drain waiting for this before the end
    return 0 if result.status is JobStatus.COMPLETED else 1
