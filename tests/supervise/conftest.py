from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

import weirflow as wf

FLOWS = "tests.supervise.flows"


@pytest.fixture
def supervisor() -> Callable[..., AbstractAsyncContextManager[wf.Supervisor]]:
    """``async with supervisor(warm=1, ...) as sup``: a Supervisor of the test flows with
    quick defaults (health every 0.5 s, grace 1 s, short backoff)."""

    @asynccontextmanager
    async def make(**kw: Any) -> AsyncIterator[wf.Supervisor]:
        kw.setdefault("health_interval_s", 0.5)
        kw.setdefault("grace_s", 1.0)
        kw.setdefault("backoff_initial_s", 0.05)
        kw.setdefault("backoff_max_s", 0.5)
        async with wf.Supervisor(flows=FLOWS, **kw) as sup:
            yield sup

    return make
