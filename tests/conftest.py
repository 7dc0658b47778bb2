from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping

import pytest

import weirflow as wf

from .redisserver import RedisServer, started_server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throw-away redis-server for the session; take a fresh database per test."""
    server = started_server()
    yield server
    server.destroy()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A fresh, empty logical database of the session's redis-server."""
    return redis_server.new_database()


def assert_balanced(queues: Mapping[str, wf.QueueStats]) -> None:
    """The accounting invariant of ARCHITECTURE.md, for every slot."""
    for path, s in queues.items():
        assert s.enqueued == s.processed + s.size + s.in_flight + s.dead_lettered, (path, s)


def assert_settled(result: wf.JobResult) -> None:
    """A finished job: balanced, nothing queued or in flight."""
    assert_balanced(result.stats.slots)
    for path, s in result.stats.slots.items():
        assert s.size == 0 and s.in_flight == 0, (path, s)


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """The cyclic GC off for one test (collected first): what is freed then was freed by
    reference counts alone."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
