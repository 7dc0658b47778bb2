"""The supervisor's handle on one child process (spawn context).

``ChildProcess(entry, arg)`` starts ``entry`` (``"package.module:function"``, an
``async def main(channel, arg)``, see ``weirflow.supervise.channel``) in a process
of its own and talks to it over a duplex pipe of framed messages
(``weirflow.supervise.framing``):

- ``await child.start(timeout_s)`` returns once the child called
  ``channel.ready(info)`` (``child.ready_info``); it raises ``ChildDiedError`` if
  the child ended first, ``ChildStartError`` (a ``ChildDiedError``) if it could not
  be spawned (an ``OSError``: too many open files...), and ``CommandTimeout`` if it
  took too long (the child is killed then);
- ``await child.request(command, body, timeout_s=...)`` sends a command under a new
  request id and waits for the answer with that id. An answer that comes after its
  command gave up (``CommandTimeout``) finds no waiter: it is dropped and counted in
  ``stale_answers``, never handed to another command. The child's error comes back
  typed (``InvalidCommand``, ``PipelineStateError``...; anything else as
  ``SuperviseError``); a command that cannot be encoded, or is larger than
  ``max_frame_bytes``, raises ``FrameError`` before anything is sent;
- ``await child.notify(kind, body)`` sends a notification; the child's
  notifications go to ``on_notification(kind, body)`` (called on the loop, it must
  not block);
- the end of the process is seen through its sentinel with ``loop.add_reader`` (no
  polling): ``exited`` is set, ``last_exit`` says how (code or signal, and when),
  waiting commands fail with ``ChildDiedError`` and ``on_exit(info)`` is called;
- ``rss_mb()`` reads the resident memory with psutil; ``await child.terminate(grace_s)``
  sends SIGTERM, then SIGKILL if the child is still there after ``grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from .. import errors
from ..errors import ChildDiedError, ChildStartError, CommandTimeout, FrameError, SuperviseError
from .channel import READY, child_entry
from .framing import DEFAULT_MAX_FRAME_BYTES, encode, read_frame

_SPAWN = multiprocessing.get_context("spawn")

#: errors a child may answer with that come back as themselves (the rest: SuperviseError)
_TYPED: dict[str, Callable[[str], SuperviseError]] = {
    "InvalidCommand": errors.InvalidCommand,
    "PipelineStateError": errors.PipelineStateError,
    "CommandTimeout": errors.CommandTimeout,
    "SuperviseError": errors.SuperviseError,
}


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How a child ended: ``code`` (its exit code) or ``signal`` (the signal's name, such
    as ``"SIGKILL"``), ``at`` (wall-clock seconds) and a one-line ``reason``."""

    code: int | None
    signal: str | None
    at: float
    reason: str

    @property
    def abnormal(self) -> bool:
        """Killed by a signal or a non-zero exit code (OTP's abnormal exit)."""
        return self.signal is not None or self.code != 0

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "signal": self.signal, "at": self.at, "reason": self.reason}


def describe_exit(exitcode: int | None) -> tuple[int | None, str | None, str]:
    """``(code, signal_name, text)`` from a ``Process.exitcode``."""
    if exitcode is None:
        return None, None, "exit status unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return None, name, f"killed by {name}"
    return exitcode, None, f"exit code {exitcode}"


class ChildProcess:
    """One child process and its pipe (see the module docstring)."""

    def __init__(
        self,
        entry: str,
        arg: Any = None,
        *,
        name: str = "weirflow-child",
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        on_notification: Callable[[str, Any], None] | None = None,
        on_exit: Callable[[ExitInfo], None] | None = None,
        daemon: bool = True,
    ) -> None:
        self.entry = entry
        self.arg = arg
        self.name = name
        self.max_frame_bytes = max_frame_bytes
        self.on_notification = on_notification
        self.on_exit = on_exit
        # a daemonic process may not start processes of its own (multiprocessing refuses):
        # a durable worker child needs them for its executor = "process" routines
        self.daemon = daemon
        self.process: multiprocessing.process.BaseProcess | None = None
        self.last_exit: ExitInfo | None = None
        self.ready_info: Any = None
        self.started_at: float | None = None  # wall clock
        self.stale_answers = 0
        self.exited = asyncio.Event()
        self._ready: asyncio.Future[Any] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._drain = asyncio.Lock()
        self._psutil: Any = None
        self._exit_reason: str | None = None
        self._pid: int | None = None
        self._reaping: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def alive(self) -> bool:
        return self.process is not None and not self.exited.is_set()

    async def start(self, timeout_s: float | None = 30.0) -> Any:
        """Spawn the child and wait until it is ready; returns what it passed to ``ready``."""
        loop = asyncio.get_running_loop()
        ends: list[Any] = []
        try:  # an OSError here (EMFILE, ENOMEM, no interpreter) is a failed start, typed
            ends.extend(_SPAWN.Pipe(duplex=True))
            parent_end, child_end = ends
            process = _SPAWN.Process(
                target=child_entry,
                args=(child_end, self.entry, self.arg, self.max_frame_bytes),
                name=self.name,
                daemon=self.daemon,
            )
            process.start()
        except OSError as e:
            for end in ends:
                end.close()
            raise ChildStartError(f"child {self.name} could not be spawned: {e}") from e
        self._ready = loop.create_future()
        child_end.close()
        self.process = process
        self._pid = process.pid
        self.started_at = time.time()
        self._psutil = None
        loop.add_reader(process.sentinel, self._sentinel)
        try:
            sock = socket.socket(fileno=os.dup(parent_end.fileno()))
        except OSError as e:  # spawned, but we cannot talk to it: end it
            parent_end.close()
            why = f"could not be spawned: {e}"
            await self.terminate(0, reason=why)
            raise ChildStartError(f"child {self.name} {why}") from e
        parent_end.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        self._reading = loop.create_task(self._read(reader))
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except TimeoutError:
            await self.terminate(0)
            raise CommandTimeout(f"child {self.name} was not ready within {timeout_s}s") from None

    async def request(self, command: str, body: Any = None, *, timeout_s: float | None) -> Any:
        """Send ``command`` and wait for its answer (see the module docstring)."""
        if not self.alive or self._writer is None:
            raise ChildDiedError(f"child {self.name} is not running")
        request_id = next(self._ids)
        data = encode(request_id, command, body, max_frame_bytes=self.max_frame_bytes)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    await self._write(data)
                except (ConnectionError, OSError) as e:  # the pipe broke: the child is ending
                    raise ChildDiedError(f"child {self.name} is gone: {e}") from None
                return await fut
        except TimeoutError:
            raise CommandTimeout(
                f"child {self.name} did not answer {command!r} within {timeout_s:.3g}s"
            ) from None
        finally:
            self._pending.pop(request_id, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # seen here if it came while the write was failing

    async def notify(self, kind: str, body: Any = None) -> None:
        if not self.alive or self._writer is None:
            raise ChildDiedError(f"child {self.name} is not running")
        await self._write(encode(0, kind, body, max_frame_bytes=self.max_frame_bytes))

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (for tests of the child's framing)."""
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        async with self._drain:
            await self._writer.drain()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                frame = await read_frame(reader, max_frame_bytes=self.max_frame_bytes)
            except OSError:
                return
            if frame is None:
                return
            if frame.request_id == 0:
                if frame.error is not None:
                    continue  # a notification we cannot read: nobody waits for it
                if frame.kind == READY:
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_result(frame.body)
                        self.ready_info = frame.body
                elif self.on_notification is not None:
                    self.on_notification(frame.kind, frame.body)
                continue
            fut = self._pending.get(frame.request_id)
            if fut is None or fut.done():
                self.stale_answers += 1  # its command gave up: never someone else's answer
                continue
            if frame.error is not None:
                fut.set_exception(frame.error)
            elif frame.kind == "ok":
                fut.set_result(frame.body)
            else:
                fut.set_exception(_remote_error(frame.body))

    def _sentinel(self) -> None:
        assert self.process is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.process.sentinel)
        self._reaping = loop.create_task(self._reap())

    async def _reap(self) -> None:
        assert self.process is not None
        # what the child wrote before it ended is read first: its last answers count
        if self._reading is not None:
            await asyncio.wait({self._reading}, timeout=1.0)
        self.process.join(0)
        if self.process.exitcode is None:  # the pipe closed a moment before the process is reaped
            await asyncio.to_thread(self.process.join)
        self._ended()

    def _ended(self) -> None:
        assert self.process is not None
        code, sig, text = describe_exit(self.process.exitcode)
        if self._exit_reason:
            text = f"{self._exit_reason} ({text})"
        self.last_exit = ExitInfo(code, sig, time.time(), text)
        self.exited.set()
        dead = ChildDiedError(f"child {self.name} ended: {text}")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(dead)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(dead)
            self._ready.exception()  # retrieved here: nobody may be waiting any more
        if self._writer is not None:
            self._writer.close()
        self.process.close()
        if self.on_exit is not None:
            self.on_exit(self.last_exit)

    def rss_mb(self) -> float | None:
        """The child's resident memory in MiB (``None`` when it is not running)."""
        if not self.alive or self.pid is None:
            return None
        try:
            if self._psutil is None:
                self._psutil = psutil.Process(self.pid)
            return float(self._psutil.memory_info().rss) / (1024 * 1024)
        except psutil.Error:
            return None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child (nothing if it is gone)."""
        if self.alive and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def ending(self, reason: str) -> None:
        """Record why the child is being ended (the first reason given goes into
        ``last_exit.reason``), for an end it is asked for rather than signalled."""
        if self._exit_reason is None:
            self._exit_reason = reason

    async def terminate(self, grace_s: float, *, reason: str | None = None) -> ExitInfo | None:
        """SIGTERM, then SIGKILL if the child is still running after ``grace_s``; returns
        ``last_exit``. ``reason`` is recorded in it (``"unhealthy: ..."``)."""
        if self.process is None:
            return None
        if reason is not None:
            self.ending(reason)
        if not self.exited.is_set():
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.exited.wait(), grace_s)
            except TimeoutError:
                self.signal(signal.SIGKILL)
                await self.exited.wait()
        return self.last_exit

    async def close(self) -> None:
        """Forget the pipe's reader task (after the child ended)."""
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading


def _remote_error(body: Any) -> SuperviseError:
    try:
        name, message, reason, *rest = body
    except (TypeError, ValueError):
        return SuperviseError(f"the child answered with an error that cannot be read: {body!r}")
    if name == "FrameError":
        return FrameError(str(message), str(reason or "malformed"))
    state = rest[0] if rest else None
    if name == "PipelineStateError":
        return errors.PipelineStateError(str(message), str(state or ""))
    make = _TYPED.get(str(name))
    if make is not None:
        return make(str(message))
    return SuperviseError(f"{name}: {message}")
