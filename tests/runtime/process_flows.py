"""Routines for the process-executor tests; module level, so that a child can import them."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import weirflow as wf


def spin(n: int, rounds: int) -> int:
    """Pure-Python work: ``rounds`` steps of an LCG from ``n``."""
    x = n
    for _ in range(rounds):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


class Square(wf.Routine):
    executor = "process"
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    def square(self, n: int, ctx: wf.Context) -> None:
        ctx.state["seen"] = ctx.state.get("seen", 0) + 1
        ctx.state["pid"] = os.getpid()
        ctx.emit(self.out, n * n)


class Work(wf.Routine):
    """Forwards ``spin(n, rounds)``; in a process or in this one (``executor`` given)."""

    inp = wf.Slot()
    out = wf.Event()

    def __init__(self, *, rounds: int = 200) -> None:
        super().__init__(rounds=rounds)

    @inp.handler
    def work(self, n: int, ctx: wf.Context) -> None:
        ctx.emit(self.out, spin(n, self.rounds))


class ProcessWork(Work):
    executor = "process"


class WideWork(ProcessWork):
    concurrency = 2


class KillOnce(wf.Routine):
    """Kills its own process (SIGKILL) on ``victim`` at the first attempt."""

    executor = "process"
    on_error = wf.ErrorPolicy(retries=1, backoff=wf.Backoff(initial_s=0.0, jitter=False), then="dead_letter")
    inp = wf.Slot()
    out = wf.Event()

    def __init__(self, *, victim: int = 3, always: bool = False) -> None:
        super().__init__(victim=victim, always=always)

    @inp.handler
    def handle(self, n: int, ctx: wf.Context) -> None:
        if n == self.victim and (ctx.attempt == 1 or self.always):
            os.kill(os.getpid(), signal.SIGKILL)
        ctx.emit(self.out, (n, ctx.attempt))


class Fails(wf.Routine):
    executor = "process"
    on_error = wf.ErrorPolicy(retries=2, backoff=wf.Backoff(initial_s=0.0, jitter=False), then="dead_letter")
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    def handle(self, n: int, ctx: wf.Context) -> None:
        if n % 5 == 0:
            raise ValueError(f"bad {n}")
        if n % 7 == 0 and ctx.attempt < 3:
            raise wf.Retry(delay_s=0.0)
        ctx.emit(self.out, n)


class Slow(wf.Routine):
    executor = "process"
    inp = wf.Slot(capacity=2)
    out = wf.Event()

    @inp.handler
    def handle(self, n: Any, ctx: wf.Context) -> None:
        time.sleep(0.001)
        ctx.emit(self.out, n)


class SlowLetters(Slow):
    """``Slow`` whose failures are dead letters: a request of the routine before it does not
    take it along (``process_chain.Chain``), so the items wait in its slot."""

    on_error = wf.ErrorPolicy(then="dead_letter")


class FailOn(wf.Routine):
    """Forwards its items; raises on ``victim`` (kills its own process if ``kill``)."""

    executor = "process"
    inp = wf.Slot()
    out = wf.Event()

    def __init__(self, *, victim: int, kill: bool = False) -> None:
        super().__init__(victim=victim, kill=kill)

    @inp.handler
    def handle(self, n: int, ctx: wf.Context) -> None:
        if n == self.victim:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError(f"bad {n}")
        ctx.emit(self.out, n)


class RetrySquare(Square):
    on_error = wf.ErrorPolicy(retries=2, backoff=wf.Backoff(initial_s=0.0, jitter=False))


class EmitLock(wf.Routine):
    """Forwards its items; for ``victim`` it emits a lock, which cannot be pickled back."""

    executor = "process"
    inp = wf.Slot()
    out = wf.Event()

    def __init__(self, *, victim: int) -> None:
        super().__init__(victim=victim)

    @inp.handler
    def handle(self, n: int, ctx: wf.Context) -> None:
        ctx.emit(self.out, threading.Lock() if n == self.victim else n)


class Tell(wf.Routine):
    """On its first attempt at item 1: writes its pid to the FIFO ``fifo``, then waits
    forever (to be killed)."""

    executor = "process"
    on_error = wf.ErrorPolicy(retries=1, backoff=wf.Backoff(initial_s=0.0, jitter=False))
    inp = wf.Slot()
    out = wf.Event()

    def __init__(self, *, fifo: str) -> None:
        super().__init__(fifo=fifo)

    @inp.handler
    def handle(self, n: int, ctx: wf.Context) -> None:
        if n == 1 and ctx.attempt == 1:
            with open(self.fifo, "w") as f:
                f.write(f"{os.getpid()}\n")
            signal.pause()  # until the test kills this process
        ctx.emit(self.out, (n, ctx.attempt))


class Count(wf.Routine):
    """Counts its items in ``ctx.state`` with two requests in flight at once."""

    executor = "process"
    concurrency = 2
    inp = wf.Slot()
    out = wf.Event()

    @inp.handler
    def count(self, n: int, ctx: wf.Context) -> None:
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        ctx.emit(self.out, n)


class Meet(wf.Routine):
    """Item 0 opens the FIFO ``fifo`` for writing, item 1 for reading: each open waits
    for the other, so both return only if the two calls run at the same time."""

    executor = "process"
    concurrency = 2
    inp = wf.Slot()
    out = wf.Event()

    def __init__(self, *, fifo: str) -> None:
        super().__init__(fifo=fifo)

    @inp.handler
    def meet(self, n: int, ctx: wf.Context) -> None:
        with open(self.fifo, "w" if n == 0 else "r"):
            pass
        ctx.emit(self.out, n)


class InOrder(wf.Routine):
    """Forwards its items after ``spin(n, rounds)`` of work, checking in ``ctx.state`` that they come in
    order and that no other call of it runs meanwhile (an exclusive ``flock`` on
    ``lock_path``, held during the call, across processes); records the processes it ran in."""

    executor = "process"
    inp = wf.Slot()
    out = wf.Event()

    def __init__(self, *, rounds: int, lock_path: str) -> None:
        super().__init__(rounds=rounds, lock_path=lock_path)

    @inp.handler
    def handle(self, n: int, ctx: wf.Context) -> None:
        import fcntl

        with open(self.lock_path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError("two calls at once") from None
            try:
                if n <= ctx.state.get("last", -1):
                    raise RuntimeError(f"{n} after {ctx.state['last']}")
                ctx.state["last"] = n
                ctx.state["n"] = ctx.state.get("n", 0) + 1
                pids = ctx.state.setdefault("pids", [])
                if os.getpid() not in pids:
                    pids.append(os.getpid())
                spin(n, self.rounds)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        ctx.emit(self.out, n)
