"""``ThreadCrew``: the engine's threads for routine workers (``runtime.threads``), reused."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

#: how long an idle thread of the crew waits for work before it ends
CREW_IDLE_S = 10.0


class ThreadCrew:
    """Threads for routine workers, reused; a new thread starts whenever none is idle.

    ``concurrent.futures.ThreadPoolExecutor`` cannot be used here: its size is fixed,
    and a routine's ``concurrency = N`` must get N threads however many other
    routines hold threads at the time (a shared pool of 10 gave 16 sleeping calls
    only 1.7 times the speed of one).
    """

    def __init__(self, *, name: str = "weirflow-worker") -> None:
        self._name = name
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._closed = False

    def start(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on an idle thread, or on a new one."""
        with self._lock:
            if self._closed:
                raise RuntimeError("thread crew is closed")
            if self._idle:
                self._idle -= 1
                self._tasks.put(fn)
                return
            self._threads += 1
            n = self._threads
        # handed over in a list the thread empties: the thread's own ``args`` would keep this
        # first work (and the job it belongs to) alive for as long as the thread lives
        first = [fn]
        threading.Thread(target=self._run, args=(first,), name=f"{self._name}-{n}", daemon=True).start()

    def _run(self, first: list[Callable[[], None]]) -> None:
        fn: Callable[[], None] | None = first.pop()
        while fn is not None:
            fn()
            fn = None  # an idle thread must not keep the last work's job alive
            with self._lock:
                if self._closed:
                    break
                self._idle += 1
            try:
                fn = self._tasks.get(timeout=CREW_IDLE_S)
            except queue.Empty:
                with self._lock:  # a task given to us while we timed out is in the queue now
                    try:
                        fn = self._tasks.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        fn = None

    def close(self) -> None:
        """Let idle threads end; busy ones end when their work returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._tasks.put(None)
