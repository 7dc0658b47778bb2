"""The child's end of the pipe: a ``Channel`` that runs commands concurrently.

``child_entry`` is the target of every supervised process (spawn context): it
ignores SIGINT (the supervisor decides when its children stop), opens the pipe as an
asyncio stream, imports ``entry`` (``"package.module:function"``, an ``async def
main(channel, arg) -> int | None``) and runs it beside the channel's reader. The
process exits with what ``main`` returns (``None``: 0), with 1 if it raised, and at
once with 0 when the pipe reaches end of stream: the supervisor is gone, so the
child leaves no orphan behind.

Each command runs in a task of its own, so a slow one (a ``send`` waiting for room)
never holds back a ``STATUS``; its answer, or the error it raised, goes back under
its request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from multiprocessing.connection import Connection
from typing import Any

from ..errors import FrameError
from ..logsetup import library_logs_to_stderr
from .framing import DEFAULT_MAX_FRAME_BYTES, encode, read_frame

Handler = Callable[[Any], Awaitable[Any]]
Main = Callable[["Channel", Any], Coroutine[Any, Any, int | None]]

#: request kinds of the protocol itself (not dispatched to handlers)
READY = "ready"


class Channel:
    """Commands from the supervisor in, answers and notifications out."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.max_frame_bytes = max_frame_bytes
        self.handlers: dict[str, Handler] = {}
        self.notification_handlers: dict[str, Callable[[Any], None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._drain = asyncio.Lock()

    def handle(self, command: str, handler: Handler) -> None:
        """Answer ``command`` with ``await handler(body)`` (its exception is the answer)."""
        self.handlers[command] = handler

    def on_notification(self, kind: str, callback: Callable[[Any], None]) -> None:
        """Call ``callback(body)`` for each notification (request id 0) of ``kind``."""
        self.notification_handlers[kind] = callback

    async def notify(self, kind: str, body: Any = None) -> None:
        """Send a notification (no answer) to the supervisor."""
        await self._write(encode(0, kind, body, max_frame_bytes=self.max_frame_bytes))

    def notify_now(self, kind: str, body: Any = None) -> None:
        """Send a notification from synchronous code: written to the pipe at once when it
        has room (the kernel has it then, even if this process dies next), else buffered
        in order with everything else."""
        self._writer.write(encode(0, kind, body, max_frame_bytes=self.max_frame_bytes))

    async def ready(self, info: Any = None) -> None:
        """Tell the supervisor this child is up (``ChildProcess.start`` waits for it)."""
        await self.notify(READY, info)

    async def settle(self, *, timeout_s: float) -> None:
        """Wait (up to ``timeout_s``) for the commands being answered to be answered."""
        await asyncio.sleep(0)  # commands whose wait just ended run first
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def _write(self, data: bytes) -> None:
        self._writer.write(data)
        async with self._drain:
            await self._writer.drain()

    async def serve(self) -> None:
        """Read and dispatch frames until the supervisor closes the pipe."""
        while True:
            frame = await read_frame(self._reader, max_frame_bytes=self.max_frame_bytes)
            if frame is None:
                return
            if frame.error is not None:
                if frame.request_id:
                    await self._answer_error(frame.request_id, frame.error)
                continue
            if frame.request_id == 0:
                callback = self.notification_handlers.get(frame.kind)
                if callback is not None:
                    callback(frame.body)
                continue
            task = asyncio.get_running_loop().create_task(self._run(frame.request_id, frame.kind, frame.body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, request_id: int, command: str, body: Any) -> None:
        handler = self.handlers.get(command)
        if handler is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            await self._answer_error(request_id, FrameError(f"unknown command {command!r} (known: {known})"))
            return
        try:
            value = await handler(body)
        except Exception as e:  # noqa: BLE001 - the handler's error is the command's answer
            await self._answer_error(request_id, e)
            return
        try:
            data = encode(request_id, "ok", value, max_frame_bytes=self.max_frame_bytes)
        except FrameError as e:
            await self._answer_error(request_id, e)
            return
        await self._write(data)

    async def _answer_error(self, request_id: int, error: BaseException) -> None:
        # a PipelineStateError's state ("full": the slot stayed full) decides the HTTP answer
        body = (
            type(error).__name__,
            str(error),
            getattr(error, "reason", None),
            getattr(error, "state", None),
        )
        await self._write(encode(request_id, "error", body, max_frame_bytes=self.max_frame_bytes))


def child_entry(conn: Connection, entry: str, arg: Any, max_frame_bytes: int) -> None:
    """The target of a supervised process (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    from .._structlog import configure_plainly  # (first: structlog without rich, see there)

    configure_plainly()
    library_logs_to_stderr()  # (a spawned child: the parent's logging setup is not inherited)
    code = asyncio.run(_child_main(conn, entry, arg, max_frame_bytes))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit work (inherited multiprocessing finalizers): the job is done


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this process when its parent dies (even by SIGKILL),
    also while it is still starting (before its pipe is read, which is the other way it
    notices). Elsewhere the end of the pipe is the only way."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the call
        os._exit(0)


def load_entry(entry: str) -> Main:
    module, _, name = entry.partition(":")
    fn: Main = getattr(importlib.import_module(module), name)
    return fn


async def _child_main(conn: Connection, entry: str, arg: Any, max_frame_bytes: int) -> int:
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    conn.close()
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    channel = Channel(reader, writer, max_frame_bytes=max_frame_bytes)
    main = load_entry(entry)
    loop = asyncio.get_running_loop()
    serving = loop.create_task(channel.serve())
    running = loop.create_task(main(channel, arg))
    await asyncio.wait({serving, running}, return_when=asyncio.FIRST_COMPLETED)
    if not running.done():  # the supervisor is gone: nobody wants the rest
        return 0
    serving.cancel()
    try:
        code = running.result()
    except Exception:  # noqa: BLE001 - the process's exit code says it; the traceback goes to stderr
        import traceback

        traceback.print_exc()
        return 1
    with contextlib.suppress(OSError):
        await writer.drain()
    return 0 if code is None else int(code)
