"""When and how often ``Client.events`` / ``AsyncClient.events`` reconnect.

A job's event stream ends with its ``end`` event. A stream that breaks (the connection
drops) or ends without it (a proxy's read timeout, the server going away) is opened
again with ``Last-Event-ID`` (the server replays what came after, ``server/sse.py``):
first after the server's ``retry:`` delay, then after twice as long each time up to
``EVENT_RETRY_MAX_S``; a stream that delivers an event starts the backoff over. After
``max_reconnects`` attempts in a row without an event, ``RequestError``.
"""

from __future__ import annotations

from ..errors import RequestError

EVENT_RETRY_S = 1.0  # until the server's "retry:" line says otherwise
EVENT_RETRY_MAX_S = 30.0
EVENT_RECONNECTS = 10  # attempts in a row without an event, then RequestError
EVENT_READ_TIMEOUT_S = 60.0  # the server sends a keep-alive comment every 15 s


class Reconnects:
    """The reconnect schedule of one ``events()`` call (``None`` ``max_reconnects``: for ever)."""

    def __init__(self, job_id: str, *, enabled: bool, max_reconnects: int | None) -> None:
        self.job_id = job_id
        self.enabled = enabled
        self.max_reconnects = max_reconnects
        self.first_s = EVENT_RETRY_S
        self.failures = 0

    def server_retry(self, retry_ms: int | None) -> None:
        """The server's ``retry:`` field: the first delay from now on."""
        if retry_ms is not None and retry_ms >= 0:
            self.first_s = min(retry_ms / 1000, EVENT_RETRY_MAX_S)

    def got_event(self) -> None:
        self.failures = 0

    def delay_s(self, why: str) -> float:
        """How long to wait before the next attempt after a stream that ended for ``why``;
        ``RequestError`` when reconnecting is off or has been tried too many times."""
        if not self.enabled:
            raise RequestError(f"event stream of {self.job_id} {why}")
        if self.max_reconnects is not None and self.failures >= self.max_reconnects:
            raise RequestError(
                f"event stream of {self.job_id} {why}; gave up after {self.failures} reconnects"
            )
        delay = min(EVENT_RETRY_MAX_S, self.first_s * 2.0**self.failures)
        self.failures += 1
        return delay
