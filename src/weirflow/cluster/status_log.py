"""The registry's status-change log, rate limited: during an outage the status goes back and
forth (``degraded`` while the breaker is open, ``recovering`` each time it lets a probe
through) several times a second, and a line per change would be thousands an hour.

A change is logged at once when none was logged in the last ``every_s``; the changes that
follow within it are counted, and at its end one line says where the status is then and
how many changes there were (no line when there were none).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("weirflow.cluster")


class StatusLog:
    """``changed(new, was)`` at each change; ``current()`` reads the status at a summary."""

    def __init__(self, url: str, current: Callable[[], str], *, every_s: float) -> None:
        self.url = url
        self.every_s = every_s
        self._current = current
        self._logged_at: float | None = None  # when the last line went out
        self._logged: str | None = None  # the status it said
        self._held = 0  # changes since, not logged yet
        self._flush: asyncio.TimerHandle | None = None

    def changed(self, new: str, was: str) -> None:
        now = time.monotonic()
        if self._logged_at is None or now - self._logged_at >= self.every_s:
            if self._held:
                # the window is over but its summary's timer has not run yet (the loop was
                # busy): the held changes go out with this one, not lost
                if self._flush is not None:
                    self._flush.cancel()
                    self._flush = None
                self._write(new, was=self._logged, changes=self._held + 1)
                return
            self._write(new, was=was, changes=1)
            return
        self._held += 1
        if self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # (no loop: nothing can end the window, so log now)
                self._write(new, was=was, changes=self._held)
                return
            self._flush = loop.call_at(loop.time() + self._logged_at + self.every_s - now, self._summary)

    def _summary(self) -> None:
        self._flush = None
        if self._held:
            self._write(self._current(), was=self._logged, changes=self._held)

    def _write(self, status: str, *, was: str | None, changes: int) -> None:
        if changes == 1:
            log.info("cluster registry status", status=status, was=was, url=self.url)
        else:
            log.info(
                "cluster registry status",
                status=status,
                was=was,
                changes=changes,
                within_s=self.every_s,
                url=self.url,
            )
        self._logged_at = time.monotonic()
        self._logged = status
        self._held = 0

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._summary()
