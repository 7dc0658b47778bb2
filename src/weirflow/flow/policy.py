"""Overflow and error policies: plain configuration, validated when built."""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import FlowError

DEFAULT_CAPACITY = 1000
NEAR_FULL_RATIO = 0.8


class Overflow(enum.StrEnum):
    """What a slot does when an item arrives and it is full."""

    BLOCK = "block"
    FAIL = "fail"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"

    @classmethod
    def parse(cls, value: Overflow | str) -> Overflow:
        if isinstance(value, Overflow):
            return value
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(repr(o.value) for o in cls)
            raise FlowError(f"unknown overflow policy {value!r} (expected one of {known})") from None


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``n`` (1-based): ``initial_s * factor**(n-1)``, capped at ``max_s``.

    With ``jitter`` the delay is drawn uniformly from ``[delay/2, delay]`` so that
    many failing items do not retry in lock-step.
    """

    initial_s: float = 0.1
    factor: float = 2.0
    max_s: float = 5.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < 0:
            raise FlowError("Backoff delays must be >= 0")
        if self.factor < 1:
            raise FlowError("Backoff factor must be >= 1")

    def delay_s(self, retry: int, rng: random.Random | None = None) -> float:
        try:
            base = min(self.max_s, self.initial_s * self.factor ** max(0, retry - 1))
        except OverflowError:  # factor ** n beyond a float: long past max_s
            base = self.max_s
        if not self.jitter or base == 0:
            return base
        return (rng or random).uniform(base / 2, base)


ThenAction = Literal["dead_letter", "fail_job"]


@dataclass(frozen=True)
class ErrorPolicy:
    """What happens when a handler raises.

    ``retries`` further attempts are made (``ctx.attempt`` counts from 1), waiting
    ``backoff`` between them, unless the exception is one of ``give_up_on``. Then
    ``then`` decides: ``"dead_letter"`` records the item with the error and goes
    on; ``"fail_job"`` fails the whole job with the error text.
    """

    retries: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    give_up_on: Sequence[type[BaseException]] = ()
    then: ThenAction = "fail_job"

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise FlowError("ErrorPolicy.retries must be >= 0")
        if self.then not in ("dead_letter", "fail_job"):
            raise FlowError(f"ErrorPolicy.then must be 'dead_letter' or 'fail_job', not {self.then!r}")
        object.__setattr__(self, "give_up_on", tuple(self.give_up_on))

    def gives_up_on(self, exc: BaseException) -> bool:
        return isinstance(exc, tuple(self.give_up_on))


DEFAULT_ERROR_POLICY = ErrorPolicy()
