from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

import weirflow as wf
from tests.redisserver import RedisServer, started_server

RegistryFactory = Callable[..., "wf.cluster.Registry"]


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone, to SIGSTOP, kill and restart (AOF, fsync at every write)."""
    server = started_server(appendonly=True, appendfsync="always")
    yield server
    server.destroy()


@pytest.fixture
async def registries() -> AsyncIterator[Callable[..., wf.cluster.Registry]]:
    """``make(url, **options)``: a registry closed at the end of the test (start it yourself).

    The deadline is 1 s unless a test sets it: the suite runs on loaded 2-core machines,
    and only the outage tests are about the deadline itself."""
    made: list[wf.cluster.Registry] = []

    def make(url: str, **options: object) -> wf.cluster.Registry:
        options.setdefault("deadline_s", 1.0)
        reg = wf.cluster.Registry(url, **options)  # type: ignore[arg-type]
        made.append(reg)
        return reg

    yield make
    for reg in made:
        await reg.close()
