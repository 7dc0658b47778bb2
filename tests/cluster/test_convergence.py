"""Registries in separate processes converge on one view: 1,000 nodes registered, updated, removed."""

from __future__ import annotations

import pytest
import redis

from tests.redisserver import RedisServer

from .peers import Peer


def listed(url: str, prefix: str = "weirflow:cluster:") -> list[list[object]]:
    """What Redis itself holds, read without the registry."""
    raw = redis.Redis.from_url(url, decode_responses=True)
    try:
        rows = []
        for node_id in raw.smembers(prefix + "ids"):
            h = raw.hgetall(prefix + "node:" + node_id)
            if h:
                rows.append([h["id"], int(h["revision"]), h["state"], int(h["running"])])
        return sorted(rows)
    finally:
        raw.close()


@pytest.mark.slow
def test_three_registries_in_three_processes_converge(redis_server: RedisServer) -> None:
    url = redis_server.new_database()
    peers = [Peer(url) for _ in range(3)]
    try:
        # two of them write at once (500 nodes each), the third only follows
        peers[0].send("write", start=0, n=500)
        peers[1].send("write", start=500, n=500)
        last = max(peers[0].receive()["revision"], peers[1].receive()["revision"])
        views = [p.ask("digest", revision=last) for p in peers]
        truth = listed(url)
        assert len(truth) == 1000
        assert sum(1 for row in truth if row[2] == "down") == 2 * len(range(0, 500, 3))
        for view in views:
            assert view["digest"] == truth
            assert view["status"] == "normal"
            assert view["metrics"]["relists"] == 1  # the start's list only: followed the log throughout
        # each write bumped the revision once: 1000 registers, 1000 heartbeats, 334 removals
        assert max(row[1] for row in truth) == 1000 + 1000 + 2 * 167 == views[0]["revision"]
    finally:
        for p in peers:
            p.close()


@pytest.mark.slow
def test_a_registry_behind_a_trimmed_log_relists(redis_server: RedisServer) -> None:
    url = redis_server.new_database()
    follower = Peer(url)
    writer = Peer(url, log_maxlen=300)
    try:
        follower.pause()  # it falls behind: its last revision will be trimmed away
        last = writer.ask("write", start=0, n=600)["revision"]  # 1,400 entries: past MAXLEN ~ 300
        raw = redis.Redis.from_url(url, decode_responses=True)
        first = int(raw.xrange("weirflow:cluster:log", count=1)[0][0].split("-")[0])
        raw.close()
        assert first > 1  # the log no longer reaches back to revision 1
        follower.cont()
        view = follower.ask("digest", revision=last)
        assert view["digest"] == listed(url)
        assert view["metrics"]["relists"] == 2  # start, and once for the gap
    finally:
        follower.close()
        writer.close()
