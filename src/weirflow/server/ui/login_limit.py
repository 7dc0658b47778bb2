"""Bad keys, counted per client address: after ``login_failures`` bad keys within
``login_window_s`` from one address, ``POST /ui/login`` and every call with
``Authorization: Bearer KEY`` (``auth.require``) answer ``429`` with ``Retry-After``
(even with a good key) until that window has moved past them. Other addresses are not
affected. One budget covers both ways in, so guessing through the API gains nothing.

The counting is ``limits``' moving window in memory: one server process's count (several
processes behind one address each count their own). The address is the connection's;
a reverse proxy's ``X-Forwarded-For`` is believed only from ``WEIRFLOW_FORWARDED_ALLOW_IPS``
(``--forwarded-allow-ips``): see docs/deployment.md.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from ..errors import ApiError

NAMESPACE = "weirflow-ui-login"


class TooManyLoginsError(ApiError):
    """Too many bad keys from this address: wait ``Retry-After`` seconds."""

    status = 429


class LoginLimiter:
    """At most ``failures`` bad keys per client address within ``window_s``."""

    def __init__(self, *, failures: int, window_s: int) -> None:
        self.rule = RateLimitItemPerSecond(failures, window_s, namespace=NAMESPACE)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, client: str) -> None:
        """Refuse ``client`` (``TooManyLoginsError``) while it is over the limit."""
        if self._limiter.test(self.rule, client):
            return
        stats = self._limiter.get_window_stats(self.rule, client)
        wait_s = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyLoginsError(
            f"too many bad keys from this address: try again in {wait_s}s",
            headers={"Retry-After": str(wait_s)},
            retry_after_s=wait_s,
        )

    def failed(self, client: str) -> None:
        """Count one bad key from ``client``."""
        self._limiter.hit(self.rule, client)
