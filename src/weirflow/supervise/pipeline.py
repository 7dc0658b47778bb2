"""One supervised pipeline: its child, its health checks, its restarts.

A ``Pipeline`` owns one task (``life``) that takes a child from the warm pool,
starts the job in it and then waits for the child to end, while a second task
checks its health: every ``health.interval_s`` a ``status`` command with the
adaptive deadline (``weirflow.supervise.health``), and the child's RSS (read from
here first, at every tick, so a child too busy or stopped to answer is still
replaced for its RSS).
``health_failures`` consecutive failures, or an RSS past ``max_rss_mb``, replace
the child (SIGTERM, then SIGKILL after ``grace_s``; for a child that stopped
answering after at most ``HUNG_KILL_AFTER_S``, since it cannot drain and a stopped
process does not act on SIGTERM), with the reason recorded in ``last_exit``.
When the child has ended, the ``RestartTracker`` decides: a restart after its
backoff (the pipeline is ``restarting`` meanwhile), or ``stopped`` / ``failed``
with the reason. Each pipeline checks its own child on its own
schedule, so a hung child delays nobody else's checks, and nothing is locked while
a command waits.

States: ``starting`` → ``running`` ⇄ ``paused``; ``unhealthy`` after a failed
check (back to ``running``/``paused`` on the next healthy one); ``restarting``;
``stopping`` → ``stopped``; ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ChildDiedError, CommandTimeout, PipelineStateError, SuperviseError
from .child import ChildProcess, ExitInfo
from .health import HealthState, RttEstimator
from .metrics import SupervisorMetrics
from .restart import GiveUp, RestartTracker
from .results import ResultsBuffer
from .sends import DeadLetters, SendWindow, dead_letter

#: how long a child may take to start a job (``run``) once it is up
RUN_TIMEOUT_S = 30.0
#: after SIGTERM on a stop, how long before SIGKILL
STOP_KILL_AFTER_S = 0.5
#: after SIGTERM to a child that stopped answering, how long before SIGKILL (at most the
#: grace): a hung child cannot drain, and one that is stopped (SIGSTOP, a debugger) does not
#: even act on SIGTERM, which stays pending, so only SIGKILL ends it
HUNG_KILL_AFTER_S = 0.5
LIVE = ("running", "paused", "unhealthy")
#: the shortest adaptive deadline of a command other than the health check
MIN_COMMAND_DEADLINE_S = 0.5


@dataclass(frozen=True)
class PipelineInfo:
    """A pipeline as it is now (no I/O to read it): the ``PipelineInfo`` of API.md."""

    id: str
    name: str
    flow: str
    state: str
    pid: int | None
    restarts: int
    last_exit: dict[str, Any] | None
    started_at: float | None
    rss_mb: float | None
    health: dict[str, Any]
    queues: dict[str, Any]
    restart: str = "permanent"
    max_rss_mb: float | None = None
    reason: str | None = None
    results: int = 0
    unacked: int = 0
    dead_letters: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "flow": self.flow,
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "started_at": self.started_at,
            "rss_mb": self.rss_mb,
            "health": self.health,
            "queues": self.queues,
            "restart": self.restart,
            "max_rss_mb": self.max_rss_mb,
            "reason": self.reason,
            "results": self.results,
            "unacked": self.unacked,
            "dead_letters": self.dead_letters,
        }


@dataclass(frozen=True)
class Timing:
    """How a supervisor checks and stops its children."""

    health_interval_s: float
    health_failures: int
    grace_s: float


class Pipeline:
    """A pipeline's record and its supervision (see the module docstring)."""

    def __init__(
        self,
        *,
        pipeline_id: str,
        name: str,
        flow: str,
        inputs: dict[str, Any],
        tracker: RestartTracker,
        max_rss_mb: float | None,
        timing: Timing,
        results: ResultsBuffer,
        metrics: SupervisorMetrics,
        take_child: Callable[[], Awaitable[ChildProcess]],
        window: SendWindow | None = None,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.id = pipeline_id
        self.name = name
        self.flow = flow
        self.inputs = inputs
        self.tracker = tracker
        self.max_rss_mb = max_rss_mb
        self.timing = timing
        self.results = results
        self.metrics = metrics
        self.take_child = take_child
        self.window = SendWindow() if window is None else window
        self.dead_letters = DeadLetters(pipeline_id) if dead_letters is None else dead_letters
        self.state = "starting"
        self.reason: str | None = None
        self.child: ChildProcess | None = None
        self.health = HealthState(interval_s=timing.health_interval_s)
        self.rtts: dict[str, RttEstimator] = {"status": self.health.rtt}
        self.queues: dict[str, Any] = {}
        self.rss_mb: float | None = None
        self.last_exit: ExitInfo | None = None
        self.started_at: float | None = None
        self.paused = False  # wanted: a restarted child is paused again
        self.stopping = False
        self._replace: str | None = None  # why the current child is being replaced
        self._finished: str | None = None  # how the current child's job ended, as it said
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._check_waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()  # a stop during a restart's backoff
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.get_running_loop().create_task(self._life(), name=f"pipeline {name}")

    # -- state ------------------------------------------------------------------------

    def info(self) -> PipelineInfo:
        child = self.child
        return PipelineInfo(
            id=self.id,
            name=self.name,
            flow=self.flow,
            state=self.state,
            pid=child.pid if child is not None and child.alive else None,
            restarts=self.tracker.count,
            last_exit=None if self.last_exit is None else self.last_exit.to_dict(),
            started_at=self.started_at,
            rss_mb=None if self.rss_mb is None else round(self.rss_mb, 1),
            health=self.health.snapshot(),
            queues=self.queues,
            restart=self.tracker.policy.value,
            max_rss_mb=self.max_rss_mb,
            reason=self.reason,
            results=len(self.results),
            unacked=len(self.window),
            dead_letters=self.dead_letters.total,
        )

    def _set(self, state: str) -> None:
        if state == self.state:
            return
        if self.stopping and state not in ("stopping", "stopped", "failed"):
            return  # a stop wins over whatever a launch or a check was about to say
        self.state = state
        for fut in self._waiters.pop(state, []):
            if not fut.done():
                fut.set_result(None)

    async def wait_state(self, state: str, timeout_s: float | None) -> None:
        if self.state == state:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(state, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise CommandTimeout(
                f"pipeline {self.id} did not become {state!r} within {timeout_s}s (it is {self.state!r})"
            ) from None

    async def next_healthy_check(self, timeout_s: float | None) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._check_waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise CommandTimeout(f"pipeline {self.id} had no healthy check within {timeout_s}s") from None

    def _live_state(self) -> str:
        return "paused" if self.paused else "running"

    @property
    def done(self) -> bool:
        return self.state in ("stopped", "failed")

    # -- the child's life -----------------------------------------------------------

    async def _life(self) -> None:
        try:
            await self._lifecycle()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug or a spawn that cannot work: say it, end here
            self.reason = f"supervision failed: {type(e).__name__}: {e}"
            child = self.child
            if child is not None and child.alive:
                await child.terminate(0, reason=self.reason)
            self._set("failed")
            self._fail_start(SuperviseError(self.reason))

    async def _lifecycle(self) -> None:
        while True:
            child = await self._launch()
            if child is not None:
                if not self.started.done():
                    self.started.set_result(None)
                watch = asyncio.get_running_loop().create_task(self._watch(child))
                try:
                    await child.exited.wait()
                finally:
                    watch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watch
                await child.close()
                self.last_exit = child.last_exit
                self.rss_mb = None
                self._unfinished(child)
            if self.stopping:
                self._set("stopped")
                return
            if self.done:  # the first start was refused (bad inputs): nothing to restart
                return
            decision = self._decide(child)
            if isinstance(decision, GiveUp):
                self.reason = decision.reason
                self._set("failed" if decision.failed else "stopped")
                self._fail_start(SuperviseError(decision.reason))
                return
            self._set("restarting")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), decision.delay_s)
            if self.stopping:
                self._set("stopped")
                return

    def _unfinished(self, child: ChildProcess) -> None:
        """Dead-letter every item sent to ``child`` that it did not finish (it ended)."""
        taken = self.window.take(child)
        if not taken:
            return
        info = child.last_exit
        if self.stopping:
            reason = "pipeline_stopped"
        elif self._replace is not None or info is None or info.abnormal:
            reason = "child_crashed"
        else:
            reason = "child_exited"
        error = info.reason if info is not None else None
        if self._finished is not None:
            error = f"{self._finished} ({error})"
        for seq, slot, item in taken:
            self.dead_letters.add(dead_letter(seq, slot, item, reason, error))

    def _decide(self, child: ChildProcess | None) -> Any:
        info = child.last_exit if child is not None else None
        why = info.reason if info is not None else self.reason or "the child did not start"
        if info is not None and self._finished is not None:
            why = f"{self._finished} ({why})"  # the job's own error, not only the exit code
        kind = self._replace or ("crash" if info is None or info.abnormal else "exit")
        abnormal = self._replace is not None or info is None or info.abnormal
        self._replace = None
        decision = self.tracker.exited(abnormal=abnormal, why=why)
        if not isinstance(decision, GiveUp):
            self.metrics.restarted(self.flow, kind)
        return decision

    async def _launch(self) -> ChildProcess | None:
        """Take a child and start the job in it; ``None`` if that failed (it counts as a crash)."""
        child: ChildProcess | None = None
        try:
            child = await self.take_child()
            self.child = child
            self._finished = None
            if self.stopping:  # stopped while the child was being taken (a restart's cold start)
                await self._abandon(child)
                return None
            child.on_notification = self._notified
            self.health = HealthState(interval_s=self.timing.health_interval_s)
            self.health.rtt = self.rtts["status"]
            body = {"flow": self.flow, "inputs": self.inputs, "credit": self.results.free}
            await self._request(child, "run", body, RUN_TIMEOUT_S)
            if self.paused:
                await self._request(child, "pause", {"timeout_s": self.timing.grace_s}, None)
            if self.stopping:  # stopped while the job was starting: nobody waits for this child
                await self._abandon(child)
                return None
        except asyncio.CancelledError:
            if child is not None:
                await child.terminate(0)
            raise
        except SuperviseError as e:
            if child is not None and child.alive:
                await child.terminate(0, reason=f"start failed: {e}")
            if not self.started.done() and not isinstance(e, (ChildDiedError, CommandTimeout)):
                # a refused first start (unknown slot...) is the caller's error, not a crash
                self.reason = str(e)
                self._set("failed")
                self._fail_start(e)
                return None
            self.reason = f"start failed: {e}"
            if child is not None:
                await child.exited.wait()
                await child.close()
                self.last_exit = child.last_exit
            return None
        self.tracker.started()
        self.started_at = time.time()
        self._set(self._live_state())
        return child

    async def _abandon(self, child: ChildProcess) -> None:
        """End a child a stop came too early for (it had not run yet): SIGTERM, then SIGKILL."""
        await child.terminate(STOP_KILL_AFTER_S, reason="stopped while starting")
        await child.close()
        self.last_exit = child.last_exit

    def _fail_start(self, error: BaseException) -> None:
        if not self.started.done():
            self.started.set_exception(error)
            self.started.exception()  # retrieved: start() may be gone already

    def _notified(self, kind: str, body: Any) -> None:
        if kind == "output":
            output, item = body
            self.results.put(output, item)
        elif kind == "output_refused":
            self.results.refused.append(tuple(body))
        elif kind == "acked":
            self.window.ack(body)
        elif kind == "dead_letter":
            seq = body.get("seq")
            if seq is not None:
                self.window.forget(seq)
            letter = dead_letter(seq, body["slot"], body["item"], body["reason"], body.get("error"))
            self.dead_letters.add(letter)
        elif kind == "finished":
            self._finished = f"job {body.get('status')}" + (f": {body['error']}" if body.get("error") else "")
            self.reason = self._finished

    async def _watch(self, child: ChildProcess) -> None:
        """Health checks of ``child`` until it ends or is replaced."""
        try:
            await self._checks(child)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - unchecked, a child must not run on: replace it
            await self._replace_child(child, "crash", f"health checks failed: {type(e).__name__}: {e}", 0)

    async def _checks(self, child: ChildProcess) -> None:
        while child.alive:
            await asyncio.sleep(self.health.interval_s)  # (the check's schedule, not a wait for state)
            # the RSS first, whatever the child answers: it is read from here (psutil), and a
            # child busy growing past the limit may also be too busy to answer in time
            if await self._over_rss(child):
                return
            t0 = time.monotonic()
            try:
                status = await child.request("status", None, timeout_s=self.health.deadline_s)
            except CommandTimeout:
                self.metrics.timed_out("status")
                self.metrics.health_failed(self.flow)
                failures = self.health.failed()
                if self.state in LIVE:
                    self._set("unhealthy")
                if failures >= self.timing.health_failures:
                    why = f"unhealthy: {failures} health checks failed in a row"
                    kill_after_s = min(self.timing.grace_s, HUNG_KILL_AFTER_S)
                    await self._replace_child(child, "unhealthy", why, kill_after_s)
                    return
                continue
            except SuperviseError:
                return  # it ended (ChildDiedError): the life task sees the exit
            rtt_s = time.monotonic() - t0
            self.health.ok(rtt_s)
            self.metrics.command("status", rtt_s)
            self.queues = status.get("queues", {})
            waiters, self._check_waiters = self._check_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
            if self.state == "unhealthy":
                self._set(self._live_state())

    async def _over_rss(self, child: ChildProcess) -> bool:
        """Read the child's RSS; replace it if it is over ``max_rss_mb`` (``True`` if so)."""
        self.rss_mb = child.rss_mb()
        if self.max_rss_mb is None or self.rss_mb is None or self.rss_mb <= self.max_rss_mb:
            return False
        why = f"max_rss_mb: {self.rss_mb:.0f} MiB over the limit of {self.max_rss_mb:g} MiB"
        await self._replace_child(child, "max_rss", why, self.timing.grace_s)
        return True

    async def _replace_child(self, child: ChildProcess, kind: str, why: str, kill_after_s: float) -> None:
        self._replace = kind
        self.reason = why
        await child.terminate(kill_after_s, reason=why)

    # -- commands ---------------------------------------------------------------------

    async def _request(self, child: ChildProcess, command: str, body: Any, timeout_s: float | None) -> Any:
        t0 = time.monotonic()
        try:
            answer = await child.request(command, body, timeout_s=timeout_s)
        except CommandTimeout:
            self.metrics.timed_out(command)
            raise
        rtt_s = time.monotonic() - t0
        self.metrics.command(command, rtt_s)
        est = self.rtts.get(command)
        if est is None:
            # commands a user waits on: a late answer is a 504 to them, so a floor of its own
            est = self.rtts[command] = RttEstimator(
                min_s=MIN_COMMAND_DEADLINE_S, max_s=max(1.0, self.timing.grace_s)
            )
        est.observe(rtt_s)
        return answer

    def _live_child(self, command: str) -> ChildProcess:
        child = self.child
        if self.state not in LIVE or child is None or not child.alive:
            raise PipelineStateError(f"cannot {command} pipeline {self.id}: it is {self.state}", self.state)
        return child

    async def command(
        self, command: str, body: Any = None, *, timeout_s: float | None = None, adaptive: bool = True
    ) -> Any:
        """Send a command to the running child: ``timeout_s``, or without one the command
        type's adaptive deadline (``adaptive=False``: no deadline)."""
        child = self._live_child(command)
        if timeout_s is None and adaptive:
            est = self.rtts.get(command)
            timeout_s = est.deadline_s if est is not None else max(1.0, self.timing.grace_s)
        try:
            return await self._request(child, command, body, timeout_s)
        except ChildDiedError as e:
            raise PipelineStateError(f"pipeline {self.id}'s child ended during {command}: {e}") from None

    async def pause(self, timeout_s: float) -> None:
        if self.state == "paused" or (self.paused and self.state in LIVE):
            raise PipelineStateError(f"pipeline {self.id} is already paused", self.state)
        await self.command("pause", {"timeout_s": timeout_s}, timeout_s=timeout_s + self.health.deadline_s)
        self.paused = True
        if self.state in LIVE:
            self._set("paused")

    async def resume(self) -> None:
        if not self.paused:
            raise PipelineStateError(f"pipeline {self.id} is not paused", self.state)
        await self.command("resume")
        self.paused = False
        if self.state in LIVE:
            self._set("running")

    async def send(self, slot: str, item: Any, timeout_s: float | None) -> None:
        """Give ``item`` to the child. Once this returns, the item is either finished by
        the child or a dead letter of the pipeline (``weirflow.supervise.sends``)."""
        self._live_child("send")
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        await self.window.reserve(timeout_s, slot=slot)  # at most unacked_capacity items not finished
        try:
            child = self._live_child("send")
        except BaseException:
            self.window.unreserve()
            raise
        seq = self.window.add(slot, item, child)
        left = None if deadline is None else max(0.0, deadline - loop.time())
        wait = None if left is None else left + max(1.0, self.health.deadline_s)
        body = {"slot": slot, "item": item, "timeout_s": left, "seq": seq}
        try:
            await self._request(child, "send", body, wait)  # None: waits for room
        except ChildDiedError:
            return  # it may have reached the job or not: the child's end dead-letters it
        except CommandTimeout:
            raise  # kept: the child may still take it; processed or dead-lettered all the same
        except BaseException:
            self.window.forget(seq)  # refused (unknown slot, full, too large): the caller has it
            raise

    async def take_results(
        self, max_items: int, wait_s: float, before: int | None = None
    ) -> list[tuple[str, Any]]:
        if before is None:
            items = await self.results.take(max_items, wait_s)
        else:
            items = self.results.take_before(before, max_items)
        child = self.child
        if items and child is not None and child.alive:
            with contextlib.suppress(SuperviseError, OSError):
                await child.notify("credit", len(items))
        return items

    async def stop(self, grace_s: float) -> None:
        """Drain (close the input, let the job finish what it holds) for up to ``grace_s``,
        then SIGTERM, then SIGKILL."""
        if self.done:
            return
        self.stopping = True
        self._wake.set()
        if self.state == "starting" and not self.started.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self._set("stopped")
            self._fail_start(PipelineStateError(f"pipeline {self.id} was stopped while starting", "stopped"))
            return
        self._set("stopping")
        child = self.child
        if child is not None and child.alive:
            deadline = time.monotonic() + grace_s
            with contextlib.suppress(SuperviseError, OSError):
                await child.request("drain", None, timeout_s=grace_s)
            try:
                await asyncio.wait_for(child.exited.wait(), max(0.2, deadline - time.monotonic()))
            except TimeoutError:
                await child.terminate(STOP_KILL_AFTER_S, reason="stopped: grace period over")
        await self.task

    async def kill(self) -> None:
        """End the supervision and the child at once (a shutdown whose bound is over)."""
        self.stopping = True
        self._wake.set()
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        child = self.child
        if child is not None and child.alive:
            await child.terminate(0, reason="stopped: shutdown took too long")
            await child.close()
            self.last_exit = child.last_exit
        if child is not None:
            self._unfinished(child)
        if not self.done:
            self._set("stopped")
        self._fail_start(PipelineStateError(f"pipeline {self.id} was stopped", "stopped"))
