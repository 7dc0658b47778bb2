"""A registry in a process of its own, driven by JSON lines on stdin (for the cluster tests and benchmarks).

``python -m tests.cluster.peer URL [ttl_s [log_maxlen]]`` prints ``{"ready": revision}``, then answers
each command line with one JSON line:

- ``{"op": "write", "start": i, "n": n}``: registers ``node-i`` .. ``node-(i+n-1)``,
  heartbeats each, removes every third; answers the last revision written;
- ``{"op": "digest", "revision": r}``: waits until the cache is at ``r`` (or past it),
  answers the cache as ``[id, revision, state, running]`` rows and counters;
- ``{"op": "quit"}``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from weirflow.cluster import Registry


def digest(reg: Registry) -> list[list[Any]]:
    return sorted([n.id, n.revision, n.state, n.running] for n in reg.cache.records.values())


async def write(reg: Registry, start: int, n: int) -> int:
    last = 0
    ids = [f"node-{i}" for i in range(start, start + n)]
    for k, node_id in enumerate(ids):
        last = (
            await reg.register(node_id, pool=f"pool-{k % 3}", capacity=4, labels={"k": str(k % 5)})
        ).revision
    for k, node_id in enumerate(ids):
        last = (await reg.heartbeat(node_id, running=k % 4)).revision
    for node_id in ids[::3]:
        await reg.remove(node_id)
        last = reg.cache.records[node_id].revision
    return last


async def main(url: str, ttl_s: float, log_maxlen: int) -> None:
    reg = Registry(
        url, ttl_s=ttl_s, deadline_s=1.0, log_maxlen=log_maxlen
    )  # a loaded CI machine: a generous deadline
    await reg.start()
    loop = asyncio.get_running_loop()
    out = sys.stdout
    out.write(orjson.dumps({"ready": reg.revision}).decode() + "\n")
    out.flush()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            cmd = orjson.loads(line)
            answer: dict[str, Any]
            if cmd["op"] == "write":
                answer = {"revision": await write(reg, cmd["start"], cmd["n"])}
            elif cmd["op"] == "digest":
                await reg.wait_revision(cmd["revision"], timeout_s=60)
                answer = {
                    "digest": digest(reg),
                    "revision": reg.revision,
                    "status": reg.status,
                    "metrics": reg.metrics.snapshot(),
                }
            else:
                return
            out.write(orjson.dumps(answer).decode() + "\n")
            out.flush()
    finally:
        await reg.close()


if __name__ == "__main__":
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    args = sys.argv[1:]
    asyncio.run(
        main(args[0], float(args[1]) if len(args) > 1 else 30.0, int(args[2]) if len(args) > 2 else 10_000)
    )
