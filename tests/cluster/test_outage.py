"""Redis stopped, killed, restarted or emptied under the registry: reads keep answering from the
cache, calls end by their deadline, the status says what happened, and the cache catches up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from structlog.testing import capture_logs

import weirflow as wf
from tests.looplag import loop_lag
from tests.redisserver import RedisServer, started_server
from weirflow.cluster import Registry

T = TypeVar("T")

Make = Callable[..., Registry]
DEADLINE_S = 0.1
# A call's own wait (its duration less the time this process could not run: tests/looplag.py)
# is bounded by the deadline and this much: the loop's timer granularity and the client's
# work around the call. A call that retried, or waited on redis-py's own timeout (none) or on
# the registry's default deadline (1 s), is well past it.
SLACK_S = 0.05
# The breaker opens at the second failed probe (breaker_threshold=2), the probe runs every
# probe_interval_s (0.2 s) +-20 %: degraded at most this long after Redis stops answering.
DEGRADED_BY_S = 2 * (0.2 * 1.2 + DEADLINE_S)
# The 1,000 nodes' ttl: longer than their registering takes on a loaded machine (2-5 s at
# load 10 here), so none has expired when the reads begin; the test then waits it out.
TTL_S = 10.0


async def started(reg: Registry) -> None:
    """Start ``reg`` and wait for its first list. A registry with a 0.1 s deadline may miss
    it on a loaded machine (a fresh connection: several round trips within one deadline);
    ``require=False`` lists again as soon as Redis answers in time, as a server does."""
    await reg.start(require=False)
    await reg.wait_status("normal", timeout_s=30)


async def register_many(reg: Registry, n: int, *, pool: str = "p") -> int:
    last = 0
    for start in range(0, n, 100):
        nodes = await asyncio.gather(
            *(
                reg.register(f"n{i}", pool=pool, capacity=4, running=i % 4)
                for i in range(start, min(n, start + 100))
            )
        )
        last = max(last, *(node.revision for node in nodes))
    return last


@pytest.fixture
def paused_server() -> Iterator[RedisServer]:
    server = started_server()
    yield server
    server.destroy()


@pytest.mark.slow
async def test_reads_keep_answering_while_redis_is_stopped_and_the_cache_catches_up_after(
    paused_server: RedisServer, registries: Make
) -> None:
    own_server = paused_server
    url = own_server.url(0)
    reg = registries(url, ttl_s=TTL_S, ttl_jitter=0.0, deadline_s=DEADLINE_S)
    writer = registries(url, ttl_s=TTL_S, ttl_jitter=0.0, deadline_s=5.0)  # 1,000 writes on a busy machine
    await started(reg)
    await writer.start()
    last = await register_many(writer, 1000)
    await reg.wait_revision(last, timeout_s=30)
    assert len(reg.nodes()) == 1000
    # (its 0.1 s probes may miss while Redis takes the 1,000 writes on a loaded machine: the
    # breaker opens and closes again by itself; the outage below starts from normal)
    await reg.wait_status("normal", timeout_s=30)

    reads: list[float] = []

    async def read_until_degraded() -> None:
        while reg.status != "degraded":
            for _ in range(100):
                t = time.perf_counter()
                assert reg.select("p") is not None
                reg.get("n7")
                reads.append(time.perf_counter() - t)
            await asyncio.sleep(0)  # let the probe run: the reads themselves never yield

    async with loop_lag() as lag:
        own_server.pause()
        stopped = time.monotonic()
        await asyncio.wait_for(read_until_degraded(), timeout=30)  # (a failure bound only)
    # degraded by the second failed probe: the time this process could not run (the reads
    # themselves hold the loop between their yields) is no part of the registry's wait
    assert lag.own_s < DEGRADED_BY_S + SLACK_S, (lag.elapsed_s, lag.late_s)
    # no read waited on the network: with Redis stopped, one that did would wait out the
    # deadline, and every read would; the reads run back to back, so on a loaded machine
    # the scheduler's preemptions land in some of them (a few percent at load 10)
    reads.sort()
    assert reads[len(reads) // 2] < DEADLINE_S / 10, (reads[len(reads) // 2], reads[-10:])
    assert sum(r >= DEADLINE_S for r in reads) <= len(reads) // 10
    print(f"select+get with redis stopped: p99 {reads[int(len(reads) * 0.99)] * 1e6:.0f} us")

    # writes fail at once while degraded, never hang
    for call in (
        lambda: reg.register("new", pool="p", capacity=1),
        lambda: reg.heartbeat("n1", running=0),
        lambda: reg.remove("n2"),
    ):
        async with loop_lag() as lag:
            with pytest.raises(wf.ClusterError):
                await call()
        assert lag.own_s < DEADLINE_S + SLACK_S, (lag.elapsed_s, lag.late_s)
    assert reg.metrics.deadline_misses >= 2
    assert reg.staleness_s >= time.monotonic() - stopped - DEADLINE_S - 0.3

    # the nodes' heartbeats age past ttl_s: excluded by the local clock, Redis still stopped
    newest = max(n.heartbeat_at for n in reg.nodes())
    await asyncio.sleep(max(0.0, newest + TTL_S - time.time()) + 0.05)  # past the ttl, by the clock
    assert reg.select("p") is None
    assert all(n.state == "down" for n in reg.nodes())
    assert reg.status == "degraded"

    own_server.cont()
    await reg.wait_status("normal", timeout_s=30)
    # what happened meanwhile: every node expired (the sweeps' tombstones come through the log)
    await reg.wait_for(lambda: reg.nodes() == [], timeout_s=30)
    assert len(reg.cache.records) == 1000 and all(n.state == "down" for n in reg.cache.records.values())
    await writer.wait_status("normal", timeout_s=30)
    node = await writer.register("after", pool="p", capacity=1)
    await reg.wait_revision(node.revision, timeout_s=10)
    assert reg.select("p") == node
    assert reg.metrics.mode_switches >= 3  # normal -> degraded -> recovering -> normal


@pytest.mark.slow
async def test_redis_killed_and_restarted_with_its_data_then_the_registry_replays(
    own_server: RedisServer, registries: Make
) -> None:
    url = own_server.url(0)
    reg = registries(url, deadline_s=DEADLINE_S)
    writer = registries(url, deadline_s=5.0)  # the writes that are no part of the outage
    await started(reg)
    await writer.start()
    first = await writer.register("a", pool="p", capacity=2)
    await reg.wait_revision(first.revision, timeout_s=10)
    own_server.kill()
    await reg.wait_status("degraded", timeout_s=10)
    async with loop_lag() as lag:
        with pytest.raises(wf.ClusterError):
            await reg.heartbeat("a", running=1)
    assert lag.own_s < DEADLINE_S + SLACK_S, (lag.elapsed_s, lag.late_s)
    assert reg.get("a") == first  # still served from the cache
    own_server.start()  # appendfsync always: nothing lost
    await reg.wait_status("normal", timeout_s=30)
    assert reg.metrics.relists == 1 and reg.metrics.replays >= 1  # replayed from its revision
    await writer.wait_status("normal", timeout_s=30)
    beat = await writer.heartbeat("a", running=1)
    assert beat.revision == first.revision + 1  # Redis kept its revisions
    await reg.wait_revision(beat.revision, timeout_s=10)
    assert reg.get("a") == beat


@pytest.mark.slow
async def test_redis_restarted_empty_then_the_registry_relists(registries: Make) -> None:
    server = started_server()  # no persistence: a restart loses everything
    try:
        url = server.url(0)
        reg = registries(url, deadline_s=DEADLINE_S)
        other = registries(url, deadline_s=5.0)  # the writer: a generous deadline on a busy machine
        await started(reg)
        await other.start()
        await reg.wait_revision(await register_many(other, 50), timeout_s=30)
        server.kill()
        await reg.wait_status("degraded", timeout_s=10)
        server.start()
        await reg.wait_status("normal", timeout_s=30)
        await other.wait_status("normal", timeout_s=30)
        # the data set is new (another epoch): the old nodes are not served from the cache
        await reg.wait_for(lambda: reg.nodes() == [], timeout_s=30)
        assert reg.metrics.rewinds >= 1 and reg.metrics.relists >= 2
        node = await other.register("fresh", pool="p", capacity=1)
        assert node.revision == 1  # the new data set counts again...
        await reg.wait_for(lambda: reg.get("fresh") == node, timeout_s=10)  # ...and reg follows it
        assert [n.id for n in reg.nodes()] == ["fresh"]
    finally:
        server.destroy()


@pytest.mark.slow
async def test_no_password_in_logs_or_errors(own_server: RedisServer, registries: Make) -> None:
    secret = "s3cret-pw-42"
    admin = redis.Redis.from_url(own_server.url(0))
    admin.config_set("requirepass", secret)
    admin.close()
    url = f"redis://:{secret}@127.0.0.1:{own_server.port}/0"
    with capture_logs() as logs:
        reg = registries(url, deadline_s=DEADLINE_S)
        writer = registries(url, deadline_s=5.0)
        await started(reg)
        await writer.start()
        await reg.wait_revision((await writer.register("a", pool="p", capacity=1)).revision, timeout_s=10)
        own_server.pause()
        await reg.wait_status("degraded", timeout_s=10)
        with pytest.raises(wf.ClusterError) as failed:
            await reg.register("b", pool="p", capacity=1)
        own_server.cont()
        await reg.wait_status("normal", timeout_s=30)
        wrong = registries(f"redis://:wrong-{secret}@127.0.0.1:{own_server.port}/0")
        with pytest.raises(wf.ClusterError) as refused:
            await wrong.start()
    text = repr(logs) + str(failed.value) + str(refused.value) + repr(reg.status_report())
    assert logs and "redis://:***@127.0.0.1" in repr(logs)
    assert secret not in text


@pytest.mark.slow
async def test_start_against_a_stopped_redis_fails_within_the_deadline_and_require_false_waits(
    own_server: RedisServer, registries: Make
) -> None:
    url = own_server.url(0)
    writer = registries(url)
    await writer.start()
    node = await writer.register("a", pool="p", capacity=1)
    own_server.pause()
    try:
        reg = registries(url, deadline_s=DEADLINE_S)
        async with loop_lag() as lag:
            with pytest.raises(wf.ClusterError, match="no answer within"):
                await reg.start()
        # connected, then no answer: the deadline
        assert lag.own_s < DEADLINE_S + SLACK_S, (lag.elapsed_s, lag.late_s)
        patient = registries(url, deadline_s=DEADLINE_S)
        await patient.start(require=False)  # starts empty, not normal
        assert patient.nodes() == [] and patient.status != "normal"
    finally:
        own_server.cont()
    await patient.wait_for(lambda: patient.get("a") == node, timeout_s=30)  # listed once Redis answers
    await patient.wait_status("normal", timeout_s=30)


def aof_commands(path: Path) -> list[tuple[int, str]]:
    """The offset and name of every command in an AOF file (RESP arrays of bulk strings)."""
    data = path.read_bytes()
    found, at = [], 0
    while at < len(data):
        start = at
        end = data.index(b"\r\n", at)
        count, at = int(data[at + 1 : end]), end + 2
        args = []
        for _ in range(count):
            end = data.index(b"\r\n", at)
            size = int(data[at + 1 : end])
            args.append(data[end + 2 : end + 2 + size])
            at = end + 2 + size + 2
        found.append((start, args[0].decode().upper()))
    return found


def lose_last_writes(server: RedisServer, writes: int) -> None:
    """Cut the AOF of a stopped server before its last ``writes`` scripts (each one
    MULTI ... EXEC in the AOF): the tail a crash with ``appendfsync everysec`` can lose."""
    (incr,) = (server.root / "appendonlydir").glob("*.incr.aof")
    multis = [offset for offset, name in aof_commands(incr) if name == "MULTI"]
    with incr.open("r+b") as f:
        f.truncate(multis[-writes])


def in_a_thread(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``coro()`` on an event loop of its own in another thread, blocking this one's
    loop meanwhile (so the registries of this loop cannot act until it is over)."""
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(coro())))
    thread.start()
    thread.join()
    return out[0]


@pytest.mark.slow
async def test_a_lost_aof_tail_whose_revisions_are_reused_is_a_rewind(
    own_server: RedisServer, registries: Make
) -> None:
    """Redis restarts without its last writes (a lost AOF tail), and other writers reuse
    their revisions before the registry looks: same epoch, a revision as high as the one
    it saw, but other entries under it. The registry relists and serves what Redis holds."""
    url = own_server.url(0)
    reg = registries(url)
    await reg.start()
    writer = registries(url)
    await writer.start()
    for i in range(5):
        last = await writer.register(f"n{i}", pool="p", capacity=1)
    await reg.wait_revision(last.revision, timeout_s=30)
    await writer.close()
    # this loop is blocked from here until the new writes are done: reg cannot look meanwhile
    own_server.kill()
    lose_last_writes(own_server, 2)  # n3 and n4 are lost
    own_server.start()

    async def write_again() -> int:
        other = wf.cluster.Registry(url, deadline_s=5.0)  # (Redis just restarted, on a busy machine)
        await other.start()
        assert other.revision == last.revision - 2  # the loss is what the test says
        try:
            for i in range(3):  # revisions 4, 5, 6: two of them reused
                node = await other.register(f"m{i}", pool="p", capacity=2)
            return node.revision
        finally:
            await other.close()

    assert in_a_thread(write_again) == last.revision + 1
    truth = registries(url)
    await truth.start()
    expected = sorted(n.id for n in truth.nodes())
    assert expected == ["m0", "m1", "m2", "n0", "n1", "n2"]
    await reg.wait_for(lambda: sorted(n.id for n in reg.nodes()) == expected, timeout_s=10)
    assert reg.metrics.rewinds >= 1
    assert {n.id: n.revision for n in reg.nodes()} == {n.id: n.revision for n in truth.nodes()}
