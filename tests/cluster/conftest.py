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
    """``make(url, **options)``: a registry closed at the end of the test (start it yourself)."""
    made: list[wf.cluster.Registry] = []

    def make(url: str, **options: object) -> wf.cluster.Registry:
        reg = wf.cluster.Registry(url, **options)  # type: ignore[arg-type]
        made.append(reg)
        return reg

    yield make
    for reg in made:
        await reg.close()
