"""``weirflow worker --processes N``: N durable worker processes under one supervisor.

``WorkerSupervisor`` runs each worker (``weirflow.supervise.worker_child``) in a child
process of its own (spawn) and keeps N of them running, with the rules of pipelines:

- **crashes** are seen through the process sentinel (``ChildProcess``); the child is
  started again after the capped, jittered backoff of its ``RestartTracker`` (OTP
  ``permanent`` by default, at most ``intensity`` restarts in ``period_s``; past that
  the slot is ``failed`` and the others go on). ``restarts`` and ``last_exit`` (code or
  signal, and when) are kept per slot and logged (``worker_child_exited``);
- **hangs** are found by health checks: every child answers ``status`` over its pipe,
  each child is checked by a task of its own with its own adaptive deadline and
  interval (``HealthState``), and ``health_failures`` consecutive failures replace it
  (SIGTERM, SIGKILL after ``HUNG_GRACE_S``: a hung process cannot drain anyway); a child
  over ``max_rss_mb`` is replaced gracefully (it drains like a stopping worker);
- each slot keeps its worker id (``<worker_id>-<slot>``) across restarts, so a
  replacement recovers the jobs its predecessor held at once (``Store.recover``) instead
  of after their leases expire;
- **shutdown** (``stop()``, SIGTERM or SIGINT in ``weirflow worker``): every child is
  told to ``stop`` at once (SIGTERM if it does not answer) and stops claiming; running
  jobs get ``grace_s``, then each child cancels them, kills its engine's child processes,
  releases their leases (another worker resumes them at once) and exits. A child still
  there ``EXIT_MARGIN_S`` after the grace is killed with its whole process tree. All
  children stop in parallel, so the shutdown takes at most about ``grace_s + 1`` s for
  any N.

``metrics`` (``WorkerGroupMetrics``) adds up what the children counted (each sends it
with its health-check answers) beside the supervisor's own restarts, health round trips
and child states; ``weirflow worker --processes N --metrics-port P`` serves it.

No lock is held while waiting on a child; the supervisor's state is this object's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil
import structlog

from ..durable.worker import default_worker_id
from ..errors import ChildDiedError, CommandTimeout, SuperviseError
from .child import ChildProcess, ExitInfo
from .health import HealthState
from .restart import GiveUp, RestartPolicy, RestartTracker
from .settings import SuperviseSettings
from .worker_metrics import WorkerGroupMetrics

log = structlog.get_logger("weirflow.supervise")

ENTRY = "weirflow.supervise.worker_child:main"
#: a child that has not answered ``stop`` within this is sent SIGTERM instead
STOP_ANSWER_S = 0.25
#: after the grace, how long a stopping child has to release its leases and exit
EXIT_MARGIN_S = 0.75
#: a hung child is sent SIGTERM, then SIGKILL this much later
HUNG_GRACE_S = 0.5
DEFAULT_START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class WorkerChildInfo:
    """One worker slot: ``state`` (``starting``, ``running``, ``unhealthy``,
    ``restarting``, ``stopping``, ``stopped``, ``failed``), its ``pid``, ``restarts`` so
    far, ``last_exit`` (``{"code", "signal", "at", "reason"}``), ``health``, ``rss_mb``
    and the last ``status`` it answered."""

    slot: int
    worker_id: str
    state: str
    pid: int | None
    restarts: int
    last_exit: dict[str, Any] | None
    started_at: float | None
    rss_mb: float | None
    health: dict[str, Any]
    status: dict[str, Any] | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "worker_id": self.worker_id,
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "started_at": self.started_at,
            "rss_mb": self.rss_mb,
            "health": self.health,
            "status": self.status,
            "reason": self.reason,
        }


class _Slot:
    """The state of one worker slot (owned by the supervisor, changed on its loop)."""

    def __init__(self, index: int, worker_id: str, tracker: RestartTracker, interval_s: float) -> None:
        self.index = index
        self.worker_id = worker_id
        self.tracker = tracker
        self.interval_s = interval_s
        self.state = "starting"
        self.child: ChildProcess | None = None
        self.health = HealthState(interval_s=interval_s)
        self.last_exit: ExitInfo | None = None
        self.status: dict[str, Any] | None = None
        self.reason: str | None = None  # why it failed, or why it was last replaced
        self.replaced: str | None = None  # why the supervisor ended this life: unhealthy, max_rss


class WorkerSupervisor:
    """``processes`` durable workers of ``store`` (a URL) running the flows of ``flows``
    (a directory or module, as ``--flows``), each in a child process (see the module
    docstring). ``worker_options`` are ``Worker`` keyword arguments (``queue``,
    ``concurrency``, ``lease_s``...); ``settings`` gives ``grace_s`` (also each worker's
    ``shutdown_grace_s``), ``health_interval_s``, ``health_failures`` and ``max_rss_mb``;
    ``restart`` and ``restart_options`` configure each slot's ``RestartTracker``."""

    def __init__(
        self,
        store: str,
        flows: str,
        *,
        processes: int,
        worker_options: Mapping[str, Any] | None = None,
        worker_id: str | None = None,
        settings: SuperviseSettings | None = None,
        restart: RestartPolicy | str = RestartPolicy.PERMANENT,
        restart_options: Mapping[str, Any] | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        metrics: WorkerGroupMetrics | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.store = store
        self.flows = flows
        self.processes = processes
        self.settings = settings or SuperviseSettings()
        self.worker_options = dict(worker_options or {})
        self.worker_options["shutdown_grace_s"] = self.settings.grace_s
        self.worker_id = worker_id or default_worker_id()
        self.start_timeout_s = start_timeout_s
        self._slots = [
            _Slot(
                i,
                f"{self.worker_id}-{i}",
                RestartTracker(policy=restart, **dict(restart_options or {})),
                self.settings.health_interval_s,
            )
            for i in range(processes)
        ]
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()  # set (and replaced) at each change of a slot
        self._tasks: list[asyncio.Task[None]] = []
        self.stopped_in_s: float | None = None  # how long the last shutdown took
        self.metrics = WorkerGroupMetrics() if metrics is None else metrics
        self.metrics.children = self.children

    # -- the public surface ----------------------------------------------------------------

    def stop(self) -> None:
        """Shut every worker down (see the module docstring); ``run()`` returns when done."""
        self._stopping.set()

    def children(self) -> list[WorkerChildInfo]:
        """Every slot's state (no I/O but reading each child's RSS)."""
        return [self._info(slot) for slot in self._slots]

    async def wait_for(self, check: Callable[[list[WorkerChildInfo]], bool], *, timeout_s: float) -> None:
        """Wait until ``check(self.children())`` holds, re-checking at each change of a
        slot (no polling); ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while True:
                changed = self._changed
                if check(self.children()):
                    return
                await changed.wait()

    async def __aenter__(self) -> WorkerSupervisor:
        self._main = asyncio.get_running_loop().create_task(self.run(), name="weirflow:worker-supervisor")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        await self._main

    async def run(self) -> None:
        """Start the workers and keep them running until ``stop()``, then shut them down."""
        loop = asyncio.get_running_loop()
        log.info("worker_supervisor_started", processes=self.processes, worker=self.worker_id)
        self._tasks = [
            loop.create_task(self._keep(slot), name=f"weirflow:worker-slot:{slot.index}")
            for slot in self._slots
        ]
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            began = time.monotonic()
            await asyncio.gather(*(self._stop_slot(slot) for slot in self._slots))
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.stopped_in_s = time.monotonic() - began
            for slot in self._slots:
                if slot.state not in ("failed",):
                    slot.state = "stopped"
            self._notify()
            log.info("worker_supervisor_stopped", worker=self.worker_id, took_s=round(self.stopped_in_s, 3))

    # -- one slot ------------------------------------------------------------------------

    async def _keep(self, slot: _Slot) -> None:
        """Run the slot's child, and start it again after each exit while the policy says so."""
        arg = {
            "store": self.store,
            "flows": self.flows,
            "worker": {**self.worker_options, "worker_id": slot.worker_id},
        }
        while not self._stopping.is_set():
            # (not daemonic: its engine starts processes for executor = "process" routines)
            child = ChildProcess(
                ENTRY,
                arg,
                name=f"weirflow-worker-{slot.index}",
                daemon=False,
                on_notification=functools.partial(self._notified, slot.index),
            )
            slot.child, slot.replaced, slot.status = child, None, None
            slot.health = HealthState(interval_s=slot.interval_s)
            self._set(slot, "starting")
            start_error: str | None = None
            try:  # (no await before it: a stop() sees this child once it is spawned)
                await child.start(timeout_s=self.start_timeout_s)
            except SuperviseError as e:  # could not spawn, died or hung while starting: abnormal
                start_error = f"start failed: {e}"
                if not self._stopping.is_set():
                    log.warning("worker_child_start_failed", slot=slot.index, error=str(e))
            else:
                slot.tracker.started()
                self._set(slot, "running")
                log.info("worker_child_started", slot=slot.index, pid=child.pid, worker=slot.worker_id)
                checks = asyncio.get_running_loop().create_task(self._check(slot, child))
                try:
                    await child.exited.wait()
                finally:
                    checks.cancel()
                    await asyncio.gather(checks, return_exceptions=True)
            if child.process is not None:  # (None: it could not even be spawned)
                await child.exited.wait()
                await child.close()
                slot.last_exit = child.last_exit
            self.metrics.child_ended(slot.index)
            if self._stopping.is_set():
                return
            exit_info = child.last_exit
            why = exit_info.reason if exit_info is not None else start_error or "did not start"
            if start_error is not None:
                slot.reason = start_error
            abnormal = slot.replaced is not None or exit_info is None or exit_info.abnormal
            decision = slot.tracker.exited(abnormal=abnormal, why=why)
            if not isinstance(decision, GiveUp):
                kind = "start_failed" if start_error is not None else slot.replaced
                self.metrics.restarted(slot.index, kind or ("crash" if abnormal else "exit"))
            log.warning(
                "worker_child_exited",
                slot=slot.index,
                worker=slot.worker_id,
                last_exit=exit_info.to_dict() if exit_info is not None else None,
                restarts=slot.tracker.count,
            )
            if isinstance(decision, GiveUp):
                slot.reason = decision.reason
                self._set(slot, "failed" if decision.failed else "stopped")
                log.error("worker_child_given_up", slot=slot.index, reason=decision.reason)
                return
            self._set(slot, "restarting")
            log.info(
                "worker_child_restarting",
                slot=slot.index,
                restarts=decision.count,
                in_s=round(decision.delay_s, 3),
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(decision.delay_s):  # the backoff, cut short by stop()
                    await self._stopping.wait()

    async def _check(self, slot: _Slot, child: ChildProcess) -> None:
        """Health checks of one child, on its own schedule and deadline (see ``HealthState``)."""
        health = slot.health
        failures = self.settings.health_failures
        while child.alive:
            await asyncio.sleep(health.interval_s)  # (the check's schedule, not a wait for state)
            # the RSS first, whatever the child answers: it is read from here (psutil), and a
            # child busy growing past the limit may also be too busy to answer in time
            if await self._over_rss(slot, child):
                return
            began = time.monotonic()
            try:
                slot.status = await child.request("status", timeout_s=health.deadline_s)
            except CommandTimeout:
                self.metrics.health_failed(slot.index)
                failed = health.failed()
                log.warning("worker_child_health_failed", slot=slot.index, pid=child.pid, failures=failed)
                if failed >= failures:
                    why = f"unhealthy: {failed} health checks failed"
                    await self._replace(slot, child, "unhealthy", why, HUNG_GRACE_S)
                    return
                self._set(slot, "unhealthy")  # (also wakes wait_for)
                continue
            except ChildDiedError:
                return
            rtt_s = time.monotonic() - began
            health.ok(rtt_s)
            self.metrics.health_ok(slot.index, rtt_s)
            if isinstance(slot.status, dict) and "metrics" in slot.status:
                self.metrics.reported(slot.index, slot.status.pop("metrics"))
            self._set(slot, "running")  # (also wakes wait_for: the health changed)

    async def _over_rss(self, slot: _Slot, child: ChildProcess) -> bool:
        """Replace ``child`` (drained) if its RSS is over ``max_rss_mb``; ``True`` if so."""
        limit = self.settings.max_rss_mb
        rss = child.rss_mb() if limit is not None else None
        if limit is None or rss is None or rss <= limit:
            return False
        why = f"rss {rss:.0f} MB over max_rss_mb {limit:g}"
        await self._replace(slot, child, "max_rss", why, self.settings.grace_s + EXIT_MARGIN_S, drain=True)
        return True

    async def _replace(
        self, slot: _Slot, child: ChildProcess, kind: str, why: str, grace_s: float, *, drain: bool = False
    ) -> None:
        slot.replaced, slot.reason = kind, why
        log.warning("worker_child_replacing", slot=slot.index, pid=child.pid, why=why)
        self._set(slot, "unhealthy")
        await _end(child, grace_s, reason=why, ask=drain)

    async def _stop_slot(self, slot: _Slot) -> None:
        child = slot.child
        if child is None or child.process is None or child.exited.is_set():
            return
        self._set(slot, "stopping")
        await _end(child, self.settings.grace_s + EXIT_MARGIN_S, reason="stopped by the supervisor", ask=True)

    # -- state ---------------------------------------------------------------------------

    def _info(self, slot: _Slot) -> WorkerChildInfo:
        child = slot.child
        alive = child is not None and child.alive
        return WorkerChildInfo(
            slot=slot.index,
            worker_id=slot.worker_id,
            state=slot.state,
            pid=child.pid if alive and child is not None else None,
            restarts=slot.tracker.count,
            last_exit=slot.last_exit.to_dict() if slot.last_exit is not None else None,
            started_at=child.started_at if alive and child is not None else None,
            rss_mb=child.rss_mb() if alive and child is not None else None,
            health=slot.health.snapshot(),
            status=slot.status,
            reason=slot.reason,
        )

    def _notified(self, index: int, kind: str, body: Any) -> None:
        if kind == "metrics":  # its last counts, as it stopped
            self.metrics.reported(index, body)

    def _set(self, slot: _Slot, state: str) -> None:
        slot.state = state
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


async def _end(child: ChildProcess, grace_s: float, *, reason: str, ask: bool) -> None:
    """End ``child``: ask it to ``stop`` (``ask``; SIGTERM when it does not answer) or send
    SIGTERM, wait ``grace_s`` for it to exit, then SIGKILL it and every process under it
    (its engine's child processes would outlive it otherwise)."""
    if child.exited.is_set():
        return
    child.ending(reason)
    if ask:
        try:
            await child.request("stop", timeout_s=STOP_ANSWER_S)
        except SuperviseError:
            child.signal(signal.SIGTERM)
    else:
        child.signal(signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace_s):
            await child.exited.wait()
    if child.exited.is_set():
        return
    tree = _descendants(child.pid)
    await child.terminate(0, reason=reason)  # SIGKILL now
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def _descendants(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []
