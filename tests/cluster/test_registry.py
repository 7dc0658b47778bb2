"""The registry against a real redis-server: writes, reads from the cache, following, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

import weirflow as wf
from weirflow.cluster import Registry
from weirflow.cluster.node import decode

from ..looplag import loop_lag
from ..redisserver import RedisServer, started_server

Make = Callable[..., Registry]


async def test_a_registration_reaches_another_registry_and_select_picks_it(
    redis_url: str, registries: Make
) -> None:
    a, b = registries(redis_url), registries(redis_url)
    await a.start()
    await b.start()
    node = await a.register("gpu-7", pool="gpu", labels={"zone": "a"}, capacity=4, address="10.0.0.7:8000")
    assert node.state == "up" and node.revision == 1 and a.get("gpu-7") == node  # read your writes
    await b.wait_revision(node.revision, timeout_s=2)
    seen = b.get("gpu-7")
    assert seen == node
    assert b.select("gpu", labels={"zone": "a"}) == node
    assert b.select("gpu", labels={"zone": "b"}) is None
    assert b.select("cpu") is None
    assert b.nodes(pool="gpu") == [node] and b.nodes() == [node] and b.nodes(pool="cpu") == []
    beat = await a.heartbeat("gpu-7", running=3)
    await b.wait_revision(beat.revision, timeout_s=2)
    got = b.get("gpu-7")
    assert got is not None and got.running == 3 and got.revision == beat.revision > node.revision
    assert b.status == "normal" and b.revision == beat.revision


async def test_select_takes_the_least_loaded_node_with_a_free_slot_counting_reservations(
    redis_url: str, registries: Make
) -> None:
    reg = registries(redis_url)
    await reg.start()
    await reg.register("a", pool="p", capacity=4, running=2)  # load 0.5
    await reg.register("b", pool="p", capacity=2, running=0)  # load 0
    await reg.register("c", pool="p", capacity=1, running=1)  # full
    await reg.register("d", pool="p", capacity=8, running=0, labels={"gpu": "1"})
    await reg.drain("d")  # draining: listed, never selected
    assert [n.id for n in reg.nodes("p")] == ["a", "b", "c", "d"]
    assert reg.get("d") is not None and reg.get("d").state == "draining"  # type: ignore[union-attr]
    assert reg.select("p", labels={"gpu": "1"}) is None
    first = reg.reserve("p")
    assert first is not None and first.node.id == "b"  # b: 1 of 2 now held locally
    second = reg.reserve("p")
    assert second is not None and second.node.id == "a"  # a at 2/4 = b at 1/2; a has more free
    third = reg.reserve("p")
    assert third is not None and third.node.id == "b"
    assert reg.select("p") is not None and reg.select("p").id == "a"  # type: ignore[union-attr]
    assert reg.reserve("p") is not None and reg.reserve("p") is None  # a full too: 4/4, b 2/2
    third.ack()  # b's slot no longer counted locally
    assert reg.select("p") is not None and reg.select("p").id == "b"  # type: ignore[union-attr]


async def test_reservations_age_out(redis_url: str, registries: Make) -> None:
    reg = registries(redis_url, reservation_ttl_s=0.05)
    await reg.start()
    await reg.register("only", pool="p", capacity=1)
    held = reg.reserve("p")
    assert held is not None and reg.select("p") is None
    await asyncio.sleep(0.06)  # the reservation's lifetime, by the clock
    assert reg.select("p") is not None


async def test_revisions_never_go_back_and_an_expired_node_is_never_served_again(
    redis_url: str, registries: Make
) -> None:
    a = registries(redis_url, ttl_s=0.3, ttl_jitter=0.0, probe_interval_s=0.05)
    b = registries(redis_url, ttl_s=0.3, probe_interval_s=10)  # b does not sweep: a's tombstone reaches it
    await a.start()
    await b.start()
    old = await a.register("n", pool="p", capacity=2, address="old:1")
    await b.wait_revision(old.revision, timeout_s=2)
    # nobody heartbeats: a's sweep expires it, with a revision and a log entry
    await b.wait_for(lambda: b.cache.records["n"].state == "down", timeout_s=3)
    tomb = b.cache.records["n"]
    assert tomb.revision > old.revision
    assert b.get("n") is None and b.select("p") is None and b.nodes() == []
    with pytest.raises(wf.cluster.NodeGoneError):
        await a.heartbeat("n", running=0)
    again = registries(redis_url, ttl_s=60)  # the node comes back for long enough to look at it
    await again.start()
    new = await again.register("n", pool="p", capacity=2, address="new:1")
    assert new.revision > tomb.revision  # the global revision did not restart with the key
    await b.wait_revision(new.revision, timeout_s=2)
    assert b.get("n") == new
    # a replayed or late copy of the old record changes nothing
    assert not b.cache.apply(old) and not b.cache.apply(tomb)
    assert b.get("n") == new
    # and a fresh registry lists the new record only
    c = registries(redis_url)
    await c.start()
    assert c.get("n") == new and c.revision == b.revision


async def test_a_heartbeat_after_the_ttl_expires_the_node_rather_than_reviving_it(
    redis_url: str, registries: Make
) -> None:
    reg = registries(redis_url, ttl_s=0.1, ttl_jitter=0.0, probe_interval_s=10)
    await reg.start()
    node = await reg.register("late", pool="p", capacity=1)
    await asyncio.sleep(0.15)  # past the ttl, by the clock; no sweep has run (probe every 10 s)
    assert reg.get("late") is not None and reg.get("late").state == "down"  # type: ignore[union-attr]
    assert reg.select("p") is None  # excluded locally by its heartbeat's age
    with pytest.raises(wf.cluster.NodeGoneError):
        await reg.heartbeat("late", running=0)
    await reg.wait_for(lambda: reg.cache.records["late"].revision > node.revision, timeout_s=2)
    assert reg.cache.records["late"].state == "down" and reg.get("late") is None


async def test_remove_leaves_a_tombstone_and_is_idempotent(redis_url: str, registries: Make) -> None:
    a, b = registries(redis_url), registries(redis_url)
    await a.start()
    await b.start()
    await a.register("x", pool="p", capacity=1)
    assert await a.remove("x") is True
    assert await a.remove("x") is False
    assert a.get("x") is None
    await b.wait_for(lambda: "x" in b.cache.records and b.cache.records["x"].state == "down", timeout_s=2)
    assert b.get("x") is None and b.select("p") is None
    with pytest.raises(wf.cluster.NodeGoneError):
        await a.drain("x")


async def test_every_write_is_one_revision_and_one_log_entry(redis_url: str, registries: Make) -> None:
    reg = registries(redis_url)
    await reg.start()
    await reg.register("x", pool="p", capacity=2)
    await reg.heartbeat("x", running=1, capacity=3)
    await reg.drain("x")
    await reg.remove("x")
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = await raw.xrange(reg.keys.log)
        assert [e[0] for e in entries] == ["1-0", "2-0", "3-0", "4-0"]
        assert [e[1]["op"] for e in entries] == ["register", "heartbeat", "drain", "remove"]
        records = [decode(e[1]) for e in entries]
        assert [r.revision for r in records] == [1, 2, 3, 4]
        assert [(r.state, r.capacity, r.running) for r in records] == [
            ("up", 2, 0),
            ("up", 3, 1),
            ("draining", 3, 1),
            ("down", 3, 0),
        ]
        assert await raw.get(reg.keys.revision) == "4"
        assert await raw.pttl(reg.keys.node("x")) > 0  # the tombstone goes in time
        assert await raw.ttl(reg.keys.revision) == -1  # the revision never expires
    finally:
        await raw.aclose()


async def test_lookup_asks_redis_once_for_an_unknown_id_and_remembers_it_is_unknown(
    redis_url: str, registries: Make
) -> None:
    reg = registries(redis_url, negative_ttl_s=30, probe_interval_s=60)  # no sweep among the calls counted
    other = registries(redis_url)
    await reg.start()
    await other.start()
    calls = reg.metrics.calls
    found = await asyncio.gather(*(reg.lookup("ghost") for _ in range(20)))
    assert found == [None] * 20
    assert reg.metrics.calls == calls + 1  # singleflight: one GET for twenty lookups
    assert await reg.lookup("ghost") is None
    assert reg.metrics.calls == calls + 1  # negative cache: no call at all
    node = await other.register("ghost", pool="p", capacity=1)
    await reg.wait_revision(node.revision, timeout_s=2)
    assert await reg.lookup("ghost") == node  # the log entry replaced the negative entry


async def test_bad_registrations_are_refused_before_any_write(redis_url: str, registries: Make) -> None:
    reg = registries(redis_url, probe_interval_s=60)
    await reg.start()
    for bad in (
        {"node_id": "", "pool": "p", "capacity": 1},
        {"node_id": "n", "pool": "", "capacity": 1},
        {"node_id": "n", "pool": "p", "capacity": 0},
        {"node_id": "n", "pool": "p", "capacity": 1, "running": -1},
        {"node_id": "n", "pool": "p", "capacity": 1, "labels": {"k": 1}},
    ):
        node_id = bad.pop("node_id")
        with pytest.raises(wf.cluster.InvalidNodeError):
            await reg.register(node_id, **bad)  # type: ignore[arg-type]
    with pytest.raises(wf.cluster.InvalidNodeError):
        await reg.heartbeat("n", running=-2)
    assert reg.revision == 0 and reg.metrics.calls == 1  # only the start's list


async def test_start_fails_fast_when_redis_is_not_there(registries: Make) -> None:
    from tests.redisserver import free_port

    reg = registries(f"redis://127.0.0.1:{free_port()}/0")
    async with loop_lag() as lag:
        with pytest.raises(wf.ClusterError):
            await reg.start()
    assert lag.own_s < 1.0, (lag.elapsed_s, lag.late_s)  # refused at once, not the deadline's wait


def test_wf_cluster_is_the_package() -> None:
    assert wf.cluster.Registry is Registry
    assert issubclass(wf.cluster.NodeGoneError, wf.ClusterError)


async def test_old_tombstones_are_forgotten_locally_and_live_nodes_kept(
    redis_url: str, registries: Make
) -> None:
    reg = registries(redis_url, probe_interval_s=60)
    await reg.start()
    await reg.register("gone", pool="p", capacity=1)
    await reg.remove("gone")
    live = await reg.register("live", pool="p", capacity=1)
    await asyncio.sleep(0.002)  # "recent" gets a later heartbeat_at (Redis time, in ms)
    await reg.register("recent", pool="p", capacity=1)
    await reg.remove("recent")
    tomb = reg.cache.records["gone"]
    assert tomb.state == "down"
    # what the probe does every 10 s: forget tombstones older than ttl_s + tombstone_ttl_s
    assert reg.cache.prune_tombstones(before=tomb.heartbeat_at + 0.0005) == 1
    assert "gone" not in reg.cache.records and "recent" in reg.cache.records
    assert reg.get("live") == live and [n.id for n in reg.nodes()] == ["live"]


async def test_a_password_in_the_query_string_is_in_no_status_or_error(registries: Make) -> None:
    server = started_server()
    try:
        admin = aioredis.Redis.from_url(server.url(0))
        await admin.config_set("requirepass", "s3cret-pw")
        await admin.aclose()
        base = f"redis://127.0.0.1:{server.port}/0"
        reg = registries(f"{base}?password=s3cret-pw")
        await reg.start()  # (the password is used, only not shown)
        await reg.register("a", pool="p", capacity=1)
        assert reg.safe_url == f"{base}?password=***"
        assert "s3cret-pw" not in repr(reg.status_report())
        wrong = registries(f"{base}?password=wrong-pw")
        assert "wrong-pw" not in wrong.safe_url
        with pytest.raises(wf.ClusterError) as refused:
            await wrong.start()
        assert "wrong-pw" not in str(refused.value) + repr(wrong.status_report())
    finally:
        server.destroy()


async def test_callers_that_give_up_do_not_open_the_breaker(redis_url: str, registries: Make) -> None:
    reg = registries(redis_url, breaker_threshold=2, probe_interval_s=60)
    await reg.start()
    await reg.register("n1", pool="p", capacity=2)
    real = reg._scripts["HEARTBEAT"]
    entered = asyncio.Event()

    async def unanswered(**kw: object) -> object:  # a call in flight when its caller gives up
        entered.set()
        await asyncio.Event().wait()
        return await real(**kw)

    reg._scripts["HEARTBEAT"] = unanswered
    for _ in range(3):  # more than the threshold: a cancelled wait_for, a cancelled request...
        entered.clear()
        call = asyncio.create_task(reg.heartbeat("n1", running=0))
        waiting = asyncio.create_task(entered.wait())
        await asyncio.wait([call, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if call.done():
            await call  # (refused at once: the breaker opened; this raises it)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    reg._scripts["HEARTBEAT"] = real
    assert reg._calls.state == "closed" and reg.status == "normal"  # Redis answered nothing wrong
    beat = await reg.heartbeat("n1", running=1)
    assert beat.running == 1


async def test_the_status_is_starting_until_the_first_list(own_server: RedisServer, registries: Make) -> None:
    """A registry that has not listed yet says ``starting`` (not ``normal``): its cache is
    empty, ``select`` answers None and ``nodes`` nothing, with no I/O; the first list
    makes it ``normal`` with every node."""
    url = own_server.url(0)
    admin = registries(url)
    await admin.start()
    await admin.register("n1", pool="p", capacity=2)
    fresh = registries(url, deadline_s=0.1)
    assert fresh.status == "starting"  # not started: never listed
    assert fresh.select("p") is None and fresh.nodes() == [] and fresh.get("n1") is None
    own_server.pause()
    try:
        await fresh.start(require=False)  # Redis does not answer: it starts empty
        assert fresh.status == "starting" and fresh.status_report()["status"] == "starting"
        assert fresh.select("p") is None and fresh.nodes() == []
    finally:
        own_server.cont()
    await fresh.wait_status("normal", timeout_s=10)
    assert fresh.select("p") == admin.get("n1")
    assert fresh.metrics.relists == 1
