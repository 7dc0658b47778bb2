"""Workers on every backend: running, steps and progress, retries, limits, leases, shutdown."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.durable.worker import Worker
from weirflow.durable.worker_jobs import json_safe
from weirflow.runtime.replay import LogJournal

from . import flows
from .conftest import StoreFactory
from .helpers import job_is, poll_store, step_outcomes, until

FLOWS = [flows.steps3, flows.one, flows.noop]


def job(flow: str = "one", item: dict[str, Any] | None = None, **kw: Any) -> JobSpec:
    first = "a.item" if flow != "noop" else "n.input"
    return JobSpec(flow=flow, inputs={first: [item or {}]}, **kw)


@asynccontextmanager
async def workers(store: Store, n: int = 1, **options: Any) -> AsyncIterator[list[Worker]]:
    options.setdefault("poll_max_s", 0.2)
    async with AsyncExitStack() as stack:
        started = []
        for i in range(n):
            w = Worker(store, FLOWS, worker_id=options.pop("worker_id", None) or f"w{i}", **options)
            started.append(await stack.enter_async_context(w))
        yield started


def finished(store: Store, *ids: str) -> Callable[[], Any]:
    async def check() -> bool:
        return all([await job_is(store, i, "completed", "failed", "cancelled") for i in ids])

    return check


async def test_runs_a_job_and_records_its_steps(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(job("steps3", {"x": 1}))
    async with workers(store) as [w]:
        await until(finished(store, job_id), w)
    record = await store.get(job_id)
    assert record is not None and record.status == "completed"
    assert record.outputs == {"c.out": [{"x": 1}]}
    steps = await store.steps(job_id)
    assert [(s.routine, s.seq, s.status, s.attempt, s.worker) for s in steps] == [
        ("a", 1, "completed", 1, "w0"),
        ("b", 1, "completed", 1, "w0"),
        ("c", 1, "completed", 1, "w0"),
    ]
    assert all(s.progress == 100 and s.message.endswith("nearly done") for s in steps)
    assert all(s.started_at and s.completed_at and s.started_at <= s.completed_at for s in steps)


async def test_a_running_step_shows_its_progress(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(job("one", {"sleep_s": 30}))
    async with workers(store, lease_s=0.6, shutdown_grace_s=0) as _:

        async def running_step() -> bool:
            return any(s.status == "running" and s.progress == 40 for s in await store.steps(job_id))

        # the row is written by the journal's flush timer, not with a claim or an outcome
        await poll_store(running_step, timeout_s=10)
        [step] = await store.steps(job_id)
        assert step.message == "a working" and step.completed_at is None


async def test_failures_retry_with_backoff_then_fail(make_store: StoreFactory) -> None:
    store = await make_store()
    backoff = wf.Backoff(initial_s=0.2, factor=2.0, max_s=5.0, jitter=False)
    job_id = await store.submit(job("one", {"fail": True}, max_attempts=3, backoff=backoff))
    async with workers(store) as [w]:
        await until(finished(store, job_id), w)
    record = await store.get(job_id)
    assert record is not None and (record.status, record.attempt) == ("failed", 3)
    assert record.error is not None and "a failed on purpose" in record.error
    events = await store.events(job_id=job_id)
    starts = [e.at for e in events if e.kind == "running"]
    fails = [e.at for e in events if e.kind in ("retrying", "failed")]
    delays = [start - fail for fail, start in zip(fails, starts[1:], strict=False)]
    assert len(delays) == 2
    for delay, expected in zip(delays, (0.2, 0.4), strict=True):
        # (the failure's event is stamped a statement after the retry time was set from the
        # clock, so a claim right at that time can be up to one round trip short of it)
        assert expected - 0.01 <= delay < expected + 1.0, delays
    # each retry of the job ran the step again; its row says how the last attempt ended
    steps = await store.steps(job_id)
    assert step_outcomes(steps) == [("a", "failed", 3, "w0")]
    assert "failed on purpose" in (max(steps, key=lambda s: s.attempt).error or "")


async def test_a_job_timeout_cancels_it_and_counts_as_a_failed_attempt(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(
        job(
            "one",
            {"sleep_s": 30},
            timeout_s=0.2,
            max_attempts=2,
            backoff=wf.Backoff(initial_s=0, jitter=False),
        )
    )
    async with workers(store) as [w]:
        await until(finished(store, job_id), w)
    record = await store.get(job_id)
    assert record is not None and (record.status, record.attempt) == ("failed", 2)
    assert record.error is not None and "timed out after 0.2s" in record.error


async def test_rate_limit_over_several_workers(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    ids = [await stores[0].submit(job("noop")) for _ in range(16)]
    async with AsyncExitStack() as stack:
        ws = [
            await stack.enter_async_context(
                Worker(s, FLOWS, worker_id=f"w{i}", concurrency=4, rate="5/1s", poll_max_s=0.2)
            )
            for i, s in enumerate(stores)
        ]
        await until(finished(stores[0], *ids), *ws, timeout_s=30)
    claims = sorted(e.at for e in await stores[0].events(kind="running"))
    assert len(claims) == 16
    for i, t in enumerate(claims):
        in_window = [u for u in claims[i:] if u < t + 1.0]
        assert len(in_window) <= 5, (i, claims)


async def test_queue_wide_concurrency(make_store: StoreFactory) -> None:
    store = await make_store()
    ids = [await store.submit(job("one", {"sleep_s": 0.15})) for _ in range(8)]
    async with workers(store, 3, concurrency=3, queue_concurrency=2) as ws:
        await until(finished(store, *ids), *ws, timeout_s=30)
    events = await store.events()
    running = peak = 0
    for e in events:  # replay the store's own record of starts and ends
        if e.kind == "running":
            running += 1
        elif e.kind in ("completed", "failed", "retrying"):
            running -= 1
        peak = max(peak, running)
    assert peak == 2


async def test_cancel_reaches_a_running_job_at_the_heartbeat(make_store: StoreFactory) -> None:
    store = await make_store()
    job_id = await store.submit(job("one", {"sleep_s": 60}))
    async with workers(store, lease_s=0.6) as [w]:
        await until(lambda: job_is(store, job_id, "running"), w)
        await store.cancel(job_id)
        seen = w.reports
        await until(lambda: _gone(w, job_id), w, timeout_s=5)
        assert w.reports > seen
    record = await store.get(job_id)
    assert record is not None and record.status == "cancelled"


async def _gone(w: Worker, job_id: str) -> bool:
    return job_id not in w.running


async def test_a_worker_keeps_the_engines_own_journal_and_adds_the_durable_one(
    make_store: StoreFactory,
) -> None:
    """An engine that already has a journal (a LogJournal here) gets both: durability is
    not turned off behind the user's back."""
    store = await make_store()
    engine = wf.Engine()
    for flow in FLOWS:
        engine.register(flow)
    log = LogJournal()
    engine.journal = log
    # b fails: its job's journal is committed for the retry to resume from
    job_id = await store.submit(job("steps3", {"fail": "b"}, max_attempts=1))
    async with Worker(store, engine, worker_id="w0", poll_max_s=0.2) as w:
        await until(finished(store, job_id), w)
        assert w.durable is not None and w.journal is not None
    assert engine.journal is log  # put back when the worker stopped
    kinds = [r["t"] for r in log.records]
    assert "start" in kinds and "done" in kinds  # the engine's journal heard every record
    assert await store.read_journal(job_id) != []  # and so did the durable one
    assert [(s.routine, s.status) for s in await store.steps(job_id)] == [("a", "completed"), ("b", "failed")]


class _Colour(enum.Enum):
    RED = 1


class _Level(enum.IntEnum):
    HIGH = 2


class _Name(str):
    pass


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, "x", None, True, -0.0]},
        {"a": [{"k": [1e16, 5e-324, 2**64 - 1, -(2**63)]}]},
        {"a": [(1, 2)]},
        {"a": [uuid.UUID(int=5)]},
        {"a": [_Colour.RED, _Level.HIGH, _Name("n")]},
        {"a": [math.nan, math.inf]},
        {"a": [2**64, -(2**70)]},
        {1: [1], "b": [{1.5: 2, True: 3, None: 4}]},
        {"a": [datetime.datetime(2020, 1, 1), _Point(1), decimal.Decimal("1.5"), b"x", {1, 2}]},
        {"a": ["\ud800"]},
    ],
)
def test_outputs_are_stored_as_the_json_module_reads_them_back(value: dict[Any, Any]) -> None:
    """A worker's outputs (and dead letters) as stored: what ``json.dumps(default=repr)``
    read back gives, also where the fast orjson copy must not be used (a UUID or an enum
    orjson writes as a value, NaN it writes as null, a tuple, a subclass, a key or an
    integer it cannot hold)."""
    expected = json.loads(json.dumps(value, default=repr))
    got = json_safe(value)
    assert repr(got) == repr(expected)  # (repr: NaN is not equal to itself)
    assert [type(v) for v in got.get("a", [])] == [type(v) for v in expected.get("a", [])]
