"""The store part of ``/readyz``: does the server's durable store answer?

A readiness probe is asked every few seconds by every load balancer and kubelet, and by
anyone with a read key, so a call must not cost a store round trip each. One probe runs
at a time (``paused_queues``: a tiny table or set on every store), every caller that
comes while it runs shares its answer (singleflight), and the answer is kept for
``max_age_s``: the store is asked at most about once per ``max_age_s`` however often
``/readyz`` is called. A store that does not answer within ``deadline_s`` (a server
stopped or unreachable, a pool that cannot connect, every pooled connection busy for
that long) or fails is ``unreachable`` with the reason, its URL without the password;
the server then answers ``503``, within ``deadline_s`` whatever the driver does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..durable.store import Store
from ..redact import redact_text, redact_url

#: a readiness probe that waits longer than this on the store says it is unreachable
DEADLINE_S = 1.0
#: how long one answer is served to every caller before the store is asked again
MAX_AGE_S = 1.0


class StoreReadiness:
    """``await check()``: ``{"status": "ok" | "unreachable", "url", "latency_ms", "error"}``."""

    def __init__(
        self,
        store: Store,
        url: str,
        *,
        deadline_s: float = DEADLINE_S,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.url = url
        self.deadline_s = deadline_s
        self.max_age_s = max_age_s
        self.clock = clock
        self.probes = 0  # how many times the store was asked (the cost /readyz puts on it)
        self._answer: dict[str, Any] | None = None
        self._answered_at = 0.0
        self._probe: asyncio.Future[dict[str, Any]] | None = None
        self._probe_started = 0.0

    async def check(self) -> dict[str, Any]:
        if self._answer is not None and self.clock() - self._answered_at < self.max_age_s:
            return self._answer
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._ask())
            self._probe_started = self.clock()
        probe = self._probe
        # Each caller waits at most what is left of the probe's deadline: a driver may take
        # much longer to give up on a cancelled call (psycopg asks the server to cancel the
        # query, then waits for it: 11 s on a stopped PostgreSQL). The probe goes on in the
        # background and keeps its answer; until then, every caller is told at once.
        left = self.deadline_s - (self.clock() - self._probe_started)
        try:
            # (shielded: a caller that gives up does not cancel the probe the others wait on)
            return await asyncio.wait_for(asyncio.shield(probe), max(0.0, left))
        except TimeoutError:
            return self._unreachable(f"the store did not answer within {self.deadline_s:g} s")
        except asyncio.CancelledError:
            if not probe.cancelled():
                raise  # this caller was cancelled
            return self._unreachable("the readiness probe was cancelled (the server is stopping)")

    def _unreachable(self, error: str) -> dict[str, Any]:
        return {
            "status": "unreachable",
            "url": redact_url(self.url),
            "latency_ms": round(self.deadline_s * 1000, 3),
            "error": error,
        }

    def close(self) -> None:
        """Cancel a probe under way (the server stops)."""
        if self._probe is not None:
            self._probe.cancel()

    async def _ask(self) -> dict[str, Any]:
        self.probes += 1
        started = self.clock()
        error: str | None = None
        try:
            async with asyncio.timeout(self.deadline_s):
                await self.store.paused_queues()
        except TimeoutError:
            error = f"the store did not answer within {self.deadline_s:g} s"
        except Exception as e:  # noqa: BLE001 (whatever the driver raised: the store is not usable)
            error = redact_text(f"{type(e).__name__}: {e}", self.url)
        finally:
            self._probe = None  # (cancelled too: the next caller asks again)
        answer: dict[str, Any] = {
            "status": "ok" if error is None else "unreachable",
            "url": redact_url(self.url),
            "latency_ms": round((self.clock() - started) * 1000, 3),
            "error": error,
        }
        self._answer, self._answered_at = answer, self.clock()
        return answer
