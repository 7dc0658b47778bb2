"""When to restart a child: OTP restart semantics, intensity and a capped backoff.

``RestartTracker`` is a pure object (no I/O, no sleeping): the supervisor tells it
when its child started and how it exited, and it answers ``Restart(delay_s)`` or
``GiveUp(reason, failed)``:

- ``permanent`` children are always restarted, ``transient`` ones only after an
  abnormal exit (a non-zero code or a signal), ``temporary`` ones never — the
  Erlang/OTP ``restart`` values;
- more than ``intensity`` restarts within ``period_s`` gives up with
  ``failed=True`` (OTP's ``MaxR`` in ``MaxT``);
- consecutive restarts wait ``initial_s * factor**(n - 1)``, capped at ``max_s``,
  minus up to ``jitter`` of it at random (so children that die together do not
  come back in lockstep); a child that ran ``stable_s`` or more before it exited
  starts the sequence again at ``initial_s``.
"""

from __future__ import annotations

import enum
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_INTENSITY = 5
DEFAULT_PERIOD_S = 60.0
DEFAULT_BACKOFF_INITIAL_S = 0.1
DEFAULT_BACKOFF_MAX_S = 10.0
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_JITTER = 0.2
DEFAULT_STABLE_S = 30.0


class RestartPolicy(enum.StrEnum):
    """OTP ``restart``: ``permanent`` always, ``transient`` after an abnormal exit, ``temporary`` never."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


@dataclass(frozen=True, slots=True)
class Restart:
    """Start the child again after ``delay_s``; ``count`` restarts so far (this one included)."""

    delay_s: float
    count: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Do not restart. ``failed``: the intensity was exceeded (the child is ``failed``);
    otherwise its policy says so (it is ``stopped``). ``reason`` is one line."""

    reason: str
    failed: bool


Decision = Restart | GiveUp


class RestartTracker:
    """The restart decisions of one child (see the module docstring)."""

    def __init__(
        self,
        *,
        policy: RestartPolicy | str = RestartPolicy.PERMANENT,
        intensity: int = DEFAULT_INTENSITY,
        period_s: float = DEFAULT_PERIOD_S,
        initial_s: float = DEFAULT_BACKOFF_INITIAL_S,
        max_s: float = DEFAULT_BACKOFF_MAX_S,
        factor: float = DEFAULT_BACKOFF_FACTOR,
        jitter: float = DEFAULT_JITTER,
        stable_s: float = DEFAULT_STABLE_S,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            self.policy = RestartPolicy(policy)
        except ValueError:
            known = ", ".join(p.value for p in RestartPolicy)
            raise ValueError(f"restart must be one of {known}, not {policy!r}") from None
        if intensity < 0 or period_s <= 0 or initial_s < 0 or max_s < initial_s or factor < 1:
            raise ValueError("need intensity >= 0, period_s > 0, 0 <= initial_s <= max_s and factor >= 1")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be within 0..1")
        self.intensity = intensity
        self.period_s = period_s
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self.stable_s = stable_s
        self._rng = rng or random.Random()
        self._clock = clock
        self._restarts: deque[float] = deque()  # when each restart within the period was decided
        self.count = 0  # restarts so far, over the child's whole life
        self.consecutive = 0  # restarts since the child last ran stable_s
        self.started_at: float | None = None

    def started(self, now: float | None = None) -> None:
        """The child is up (first start or a restart)."""
        self.started_at = self._clock() if now is None else now

    def exited(self, *, abnormal: bool, why: str, now: float | None = None) -> Decision:
        """The child ended; ``why`` says how (``"killed by SIGKILL"``, ``"exit code 0"``,
        ``"unhealthy: 3 health checks failed"``...). Replacing a hung or too big child
        counts as an abnormal exit."""
        t = self._clock() if now is None else now
        if self.policy is RestartPolicy.TEMPORARY:
            return GiveUp(f"{why}; restart is temporary", failed=False)
        if self.policy is RestartPolicy.TRANSIENT and not abnormal:
            return GiveUp(f"{why}; restart is transient and the exit was normal", failed=False)
        if self.started_at is not None and t - self.started_at >= self.stable_s:
            self.consecutive = 0
        while self._restarts and t - self._restarts[0] > self.period_s:
            self._restarts.popleft()
        if len(self._restarts) >= self.intensity:
            return GiveUp(
                f"{why}; restart intensity exceeded ({len(self._restarts) + 1} restarts "
                f"within {self.period_s:g}s, at most {self.intensity})",
                failed=True,
            )
        self._restarts.append(t)
        self.count += 1
        self.consecutive += 1
        return Restart(self.backoff_s(self.consecutive), self.count)

    def backoff_s(self, n: int) -> float:
        """The wait before the ``n``-th consecutive restart (1 is the first)."""
        base = min(self.max_s, self.initial_s * self.factor ** max(0, n - 1))
        return base * (1 - self.jitter * self._rng.random())
