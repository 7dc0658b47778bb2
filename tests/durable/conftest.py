"""Fixtures of the durable tests: one store of each backend, a session PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster import conftest as cluster_fixtures
from weirflow.durable import Store, open_store

from .pgserver import PgServer, started_server

BACKENDS = ["memory", "sqlite", "postgres", "redis"]


class FakeClock:
    """A store clock the test moves by hand: delays and leases without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    server = started_server()
    yield server
    server.destroy()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


StoreFactory = Callable[..., Awaitable[Store]]


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend = getattr(request, "param", "sqlite")
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'weirflow.db'}"
    if backend == "redis":
        return str(request.getfixturevalue("redis_url"))
    server: PgServer = request.getfixturevalue("pg")
    return server.new_database()


@pytest.fixture
async def make_store(store_url: str) -> AsyncIterator[StoreFactory]:
    """Open more stores on the same database (each is closed at the end); the memory
    backend hands back the same store, since two memory stores share nothing."""
    opened: list[Store] = []
    first: list[Store] = []

    async def make(**options: object) -> Store:
        if store_url == "memory://" and first:
            return first[0]
        store = open_store(store_url, **options)  # type: ignore[arg-type]
        await store.open()
        opened.append(store)
        first.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory, clock: FakeClock) -> Store:
    """A fresh, open store of each backend on the fake clock."""
    return await make_store(clock=clock)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL for worker processes, on SQLite, PostgreSQL and Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'weirflow.db'}"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    server: PgServer = request.getfixturevalue("pg")
    return server.new_database()


# ``make(url, **options)``: a registry closed at the end of the test; the cluster tests'
# own fixture, so that both folders build registries the same way.
registries = cluster_fixtures.registries


@pytest.fixture(params=["redis", "postgres"])
def job_store(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh store on a real Redis or a real PostgreSQL (the stores the
    cluster dispatches on)."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    server: PgServer = request.getfixturevalue("pg")
    return server.new_database()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" in metafunc.fixturenames and not any(
        m.name == "parametrize" and "store_url" in m.args[0] for m in metafunc.definition.iter_markers()
    ):
        metafunc.parametrize("store_url", BACKENDS, indirect=True)
