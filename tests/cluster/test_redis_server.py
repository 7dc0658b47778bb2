"""The throw-away redis-server the cluster tests stand on: fresh databases, restart with AOF."""

from __future__ import annotations

import redis

from tests.redisserver import RedisServer, started_server


def test_each_test_gets_an_empty_database(redis_server: RedisServer) -> None:
    first, second = redis_server.new_database(), redis_server.new_database()
    assert first != second
    a = redis.Redis.from_url(first)
    b = redis.Redis.from_url(second)
    a.set("k", "v")
    assert b.get("k") is None and a.get("k") == b"v"
    a.close()
    b.close()


def test_a_restarted_server_with_aof_keeps_what_was_written() -> None:
    server = started_server(appendonly=True, appendfsync="always")
    try:
        client = redis.Redis.from_url(server.url(3))
        client.set("kept", "yes")
        client.close()
        server.kill()
        server.start()
        client = redis.Redis.from_url(server.url(3))
        assert client.get("kept") == b"yes"
        client.close()
    finally:
        server.destroy()
