"""The dramatiq side of ``benchmarks.durable_vs``: a no-op actor that records its first
start and last end in Redis, like ``durable_arq.noop``. ``dramatiq`` imports this module
in its worker processes (the Redis port comes from ``WEIRFLOW_BENCH_REDIS_PORT``)."""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

PORT_ENV = "WEIRFLOW_BENCH_REDIS_PORT"


def setup(port: int) -> Any:
    broker = RedisBroker(host="127.0.0.1", port=port)
    dramatiq.set_broker(broker)
    return broker


_broker = setup(int(os.environ.get(PORT_ENV, "6379")))


@dramatiq.actor(max_retries=0)
def noop(item: int) -> None:
    now = time.time()
    pipe = _broker.client.pipeline(transaction=False)
    pipe.setnx("bench:first", now)
    pipe.set("bench:last", now)
    pipe.incr("bench:done")
    pipe.execute()
