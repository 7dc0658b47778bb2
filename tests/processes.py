"""Subprocesses of a test that do not outlive it."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
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
