"""Subprocesses of a test that do not outlive it."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T", str, bytes)


@contextlib.contextmanager
def running(proc: subprocess.Popen[T]) -> Iterator[subprocess.Popen[T]]:
    """``proc`` for the block; killed (and waited for) at its end if it still runs, so a
    test that failed does not leave it behind."""
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Exits:
    """When each of some processes (not children of the test) ends, by ``pidfd``: Linux makes
    a process's pidfd readable the moment it exits, so this waits on that event rather than
    polling the process table. Open it before the signal whose effect is timed.

    ``wait(timeout_s)`` returns ``{pid: time.monotonic() of its end}`` once every process
    has ended (``TimeoutError`` naming those still running after ``timeout_s``)."""

    def __init__(self, pids: Iterable[int]) -> None:
        self._fds = {os.pidfd_open(pid): pid for pid in pids}

    def wait(self, timeout_s: float) -> dict[int, float]:
        ended: dict[int, float] = {}
        poller = select.poll()
        for fd in self._fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while len(ended) < len(self._fds):
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            ready = poller.poll(left_ms)
            now = time.monotonic()
            if not ready:
                running = sorted(pid for fd, pid in self._fds.items() if pid not in ended)
                raise TimeoutError(f"still running after {timeout_s} s: {running}")
            for fd, _ in ready:
                poller.unregister(fd)
                ended[self._fds[fd]] = now
        return ended

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Exits:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
