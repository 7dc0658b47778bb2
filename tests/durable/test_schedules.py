"""Schedules on every backend (memory, SQLite, PostgreSQL) on the fake clock: ticks, one job
per tick under concurrent firing, the missed-tick policy, re-adding, bad schedules."""

from __future__ import annotations

import asyncio
import datetime
from zoneinfo import ZoneInfo

import pytest

import weirflow as wf
from weirflow.durable import JobSpec, Store
from weirflow.durable.schedules import Schedule

from .conftest import FakeClock, StoreFactory

T0 = 1_700_000_000.0  # the fake clock's start: 2023-11-14 22:13:20 UTC


def every(name: str = "tick", every_s: float = 60, **kw: object) -> Schedule:
    return Schedule(name=name, flow="f", inputs={"a.x": [name]}, every_s=every_s, **kw)  # type: ignore[arg-type]


async def jobs_of(store: Store) -> list[tuple[str | None, str]]:
    return sorted((j.idempotency_key, j.status) for j in await store.list_jobs())


async def test_a_schedule_first_ticks_after_it_is_added_and_is_listed(store: Store, clock: FakeClock) -> None:
    stored = await store.add_schedule(every())
    assert stored.next_at == T0 + 40  # the next multiple of 60 s since the epoch
    assert stored.created_at == T0 and stored.last_at is None
    await store.add_schedule(every("other", every_s=3600, queue="q2"))
    assert [s.name for s in await store.list_schedules()] == ["other", "tick"]
    [listed] = await store.list_schedules(queue="q2")
    assert (listed.name, listed.every_s, listed.queue, listed.next_at) == ("other", 3600, "q2", T0 + 2800)
    assert listed.to_dict()["inputs"] == {"a.x": ["other"]}
    fired = await store.fire_schedules("default")
    assert fired.jobs == [] and fired.next_at == T0 + 40
    assert await store.remove_schedule("other") is True
    assert await store.remove_schedule("other") is False
    assert [s.name for s in await store.list_schedules()] == ["tick"]
    assert (await store.fire_schedules("q2")).next_at is None  # no schedules left in q2


async def test_each_tick_makes_one_job_with_its_key(store: Store, clock: FakeClock) -> None:
    await store.add_schedule(every(priority=4, max_attempts=5, timeout_s=9))
    clock.advance(40)  # the tick itself
    fired = await store.fire_schedules("default")
    [job_id] = fired.jobs
    assert fired.next_at == T0 + 100
    job = await store.get(job_id)
    assert job is not None
    assert job.idempotency_key == "schedule:tick:2023-11-14T22:14:00.000Z"
    assert (job.flow, job.inputs, job.queue, job.status) == ("f", {"a.x": ["tick"]}, "default", "queued")
    assert (job.priority, job.max_attempts, job.timeout_s) == (4, 5, 9)
    assert (await store.fire_schedules("default")).jobs == []  # the same tick: nothing more
    clock.advance(59.9)
    assert (await store.fire_schedules("default")).jobs == []
    clock.advance(0.2)
    [second] = (await store.fire_schedules("default")).jobs
    [s] = await store.list_schedules()
    assert (s.last_at, s.last_job_id, s.next_at) == (T0 + 100, second, T0 + 160)
    assert [k for k, _ in await jobs_of(store)] == [
        "schedule:tick:2023-11-14T22:14:00.000Z",
        "schedule:tick:2023-11-14T22:15:00.000Z",
    ]


async def test_concurrent_firings_make_one_job_per_tick(make_store: StoreFactory, clock: FakeClock) -> None:
    stores = [await make_store(clock=clock) for _ in range(3)]  # three connections (one on memory)
    await stores[0].add_schedule(every("a"))
    await stores[0].add_schedule(every("b"))
    for _ in range(4):
        clock.advance(60)
        fired = await asyncio.gather(*(s.fire_schedules("default") for s in stores for _ in range(3)))
        assert sum(len(f.jobs) for f in fired) == 2  # one per schedule, whoever made it
    keys = [k for k, _ in await jobs_of(stores[0])]
    assert len(keys) == 8 and len(set(keys)) == 8


async def test_missed_ticks_run_once_by_default(store: Store, clock: FakeClock) -> None:
    await store.add_schedule(every())
    clock.advance(40 + 600 + 30)  # down for 10 minutes: 11 ticks due, the latest 30 s ago
    fired = await store.fire_schedules("default")
    assert len(fired.jobs) == 1 and fired.next_at == T0 + 700
    job = await store.get(fired.jobs[0])
    assert job is not None and job.idempotency_key == "schedule:tick:2023-11-14T22:24:00.000Z"  # the latest
    [event] = await store.events(kind="schedule_skipped")
    assert event.data == {"schedule": "tick", "fired": T0 + 640}


async def test_missed_ticks_are_skipped_with_skip(store: Store, clock: FakeClock) -> None:
    await store.add_schedule(every(catchup="skip", misfire_grace_s=5))
    clock.advance(40 + 600 + 30)
    fired = await store.fire_schedules("default")
    assert fired.jobs == [] and fired.next_at == T0 + 700  # resumes at the next tick
    [event] = await store.events(kind="schedule_skipped")
    assert event.data == {"schedule": "tick", "fired": None}
    clock.advance(30 + 4)  # 4 s late: within the grace, it runs
    [job_id] = (await store.fire_schedules("default")).jobs
    assert await jobs_of(store) == [("schedule:tick:2023-11-14T22:25:00.000Z", "queued")]
    assert job_id


async def test_re_adding_keeps_the_next_tick_unless_the_timing_changed(
    store: Store, clock: FakeClock
) -> None:
    await store.add_schedule(every())
    clock.advance(40 + 120)  # two ticks due, not fired yet
    again = await store.add_schedule(every(priority=9))  # an app starting again schedules it again
    assert again.next_at == T0 + 40 and again.created_at == T0 and again.priority == 9
    [job_id] = (await store.fire_schedules("default")).jobs  # the missed tick still runs (once)
    job = await store.get(job_id)
    assert job is not None and job.priority == 9
    changed = await store.add_schedule(every(every_s=3600))
    assert changed.next_at == 1_700_002_800.0 and changed.created_at == T0  # the next whole hour


async def test_re_adding_from_a_clock_behind_never_moves_the_schedule_back_to_past_ticks(
    store: Store, clock: FakeClock
) -> None:
    await store.add_schedule(every())
    clock.advance(40)  # the 22:14:00 tick
    [first] = (await store.fire_schedules("default")).jobs
    clock.now = T0 - 300  # another process, its clock 5 minutes behind, changes the timing
    changed = await store.add_schedule(every(every_s=30))
    # the first tick after the last one fired (22:14:30), not 22:08:30: ticks already past
    assert changed.next_at == T0 + 70 and changed.last_at == T0 + 40 and changed.last_job_id == first
    clock.now = T0 + 10  # a further change, from a clock still behind the last tick (22:13:30)
    assert (await store.add_schedule(every(every_s=20))).next_at == T0 + 60  # after 22:14:00
    clock.now = T0 + 60
    [second] = (await store.fire_schedules("default")).jobs
    assert await jobs_of(store) == [
        ("schedule:tick:2023-11-14T22:14:00.000Z", "queued"),
        ("schedule:tick:2023-11-14T22:14:20.000Z", "queued"),
    ]
    assert second != first


async def test_cron_ticks_in_its_time_zone(store: Store, clock: FakeClock) -> None:
    stored = await store.add_schedule(
        Schedule(name="nightly", flow="f", inputs={}, cron="0 3 * * *", tz="Europe/Paris")
    )
    paris = datetime.datetime.fromtimestamp(stored.next_at, ZoneInfo("Europe/Paris"))
    assert (paris.year, paris.month, paris.day, paris.hour, paris.minute) == (2023, 11, 15, 3, 0)
    clock.now = stored.next_at + 1
    [job_id] = (await store.fire_schedules("default")).jobs
    job = await store.get(job_id)
    assert job is not None and job.idempotency_key == "schedule:nightly:2023-11-15T02:00:00.000Z"
    [s] = await store.list_schedules()
    assert s.next_at == stored.next_at + 24 * 3600


@pytest.mark.parametrize("store_url", ["memory"], indirect=True)
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression '61 * * * *'"),
        ({"cron": "* * *"}, "bad cron expression"),
        ({"cron": "*/5 * * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "*/5 * * * *", "tz": "../etc/passwd"}, "unknown time zone"),
        ({}, "exactly one of cron= and every_s="),
        ({"cron": "* * * * *", "every_s": 60}, "exactly one of cron= and every_s="),
        ({"every_s": 0.1}, "every_s must be a number >= 1"),
        ({"every_s": float("nan")}, "every_s must be"),
        ({"every_s": 60, "catchup": "all"}, "catchup must be one of once, skip"),
        ({"every_s": 60, "max_attempts": 0}, "attempts must be >= 1"),
        ({"every_s": 60, "name": ""}, "name must be a non-empty string"),
    ],
)
def test_a_bad_schedule_is_a_schedule_error(store_url: str, kw: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "s", "flow": "f", "inputs": {}, **kw}
    with pytest.raises(wf.ScheduleError, match=message.replace("*", r"\*").replace("(", r"\(")):
        Schedule(**fields)  # type: ignore[arg-type]


def test_inputs_a_job_cannot_hold_are_refused_naming_where() -> None:
    with pytest.raises(wf.UnstorableError, match=r'inputs\["a.x"\]\[1\]: .*NUL'):
        Schedule(name="s", flow="f", inputs={"a.x": [1, "\x00"]}, every_s=60)


async def test_a_tick_whose_key_a_job_holds_makes_no_job_and_names_that_job(
    store: Store, clock: FakeClock
) -> None:
    stored = await store.add_schedule(every())
    key = stored.key(stored.next_at)
    submitted = await store.submit(JobSpec(flow="f", inputs={}, idempotency_key=key))
    clock.now = stored.next_at
    fired = await store.fire_schedules("default")
    assert fired.jobs == [] and fired.next_at == stored.next_at + 60
    [s] = await store.list_schedules()
    assert (s.last_at, s.last_job_id, s.next_at) == (stored.next_at, submitted, stored.next_at + 60)
    assert [j.id for j in await store.list_jobs()] == [submitted]
