"""The node registry on a throw-away loopback redis-server (issue 11).

``python -m benchmarks.cluster_registry [--nodes N] [--calls N] [--rounds R] [--quick] [--json PATH]``

Measured in one run, in rounds that interleave each side with its baseline:

- ``select`` over ``--nodes`` nodes of one pool (no labels, and with a label that a
  tenth of the nodes carry), against the plain linear scan a cache without the index
  would do (the baseline), and with Redis SIGSTOPped (reads never touch it);
- ``heartbeat`` and ``register`` (one Lua script each, loopback), against a bare
  ``PING`` on a client with the same settings (the floor: one round trip);
- convergence: from before a heartbeat on registry A until registry B (same
  process, its own connections) has applied it;
- recovery for ``--nodes`` nodes: SIGCONT after a 1 s SIGSTOP until ``status`` is
  ``normal`` again, and a cold ``start()`` (the list) of a registry.

Each number is a median over rounds of per-round p50/p99; ratios are side / baseline
of the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redisserver import RedisServer, started_server  # noqa: E402

from weirflow.cluster import Node, Registry  # noqa: E402
from weirflow.cluster.calls import connect  # noqa: E402

QUANTILES = (0.5, 0.99)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summary_us(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 0.5) * 1e6, "p99": pct(values, 0.99) * 1e6}


def scan(nodes: list[Node], labels: dict[str, str] | None, now: float) -> Node | None:
    """The baseline: what select costs without an index (least loaded by a full scan)."""
    best: Node | None = None
    best_key = (2.0, 0, "")
    for n in nodes:
        if n.state != "up" or n.expires_at < now or n.running >= n.capacity:
            continue
        if labels and not n.matches(labels):
            continue
        key = (n.running / n.capacity, n.running - n.capacity, n.id)
        if key < best_key:
            best, best_key = n, key
    return best


def time_sync(fn: Callable[[], object], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


async def time_async(fn: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def fill(reg: Registry, n: int) -> int:
    last = 0
    for start in range(0, n, 50):
        made = await asyncio.gather(
            *(
                reg.register(
                    f"n{i}",
                    pool="gpu",
                    capacity=8,
                    running=i % 7,
                    labels={"zone": "z0" if i % 10 == 0 else f"z{1 + i % 3}"},
                )
                for i in range(start, min(n, start + 50))
            )
        )
        last = max(last, *(m.revision for m in made))
    return last


async def measure(server: RedisServer, *, nodes: int, calls: int, rounds: int) -> dict[str, Any]:
    url = server.url(1)
    opts: dict[str, Any] = {"ttl_s": 600.0, "deadline_s": 1.0}
    a, b = Registry(url, **opts), Registry(url, **opts)
    await a.start()
    await b.start()
    floor = connect(url, deadline_s=1.0)
    runs: dict[str, list[dict[str, float]]] = {}

    def keep(name: str, values: list[float]) -> None:
        runs.setdefault(name, []).append(summary_us(values))

    try:
        await b.wait_revision(await fill(a, nodes), timeout_s=60)
        listed = list(b.cache.pools["gpu"].values())
        await a.register("hb", pool="bench", capacity=4)
        for r in range(rounds):
            gc.collect()
            now = time.time()
            pair: list[tuple[str, Callable[[], object]]] = [
                ("select", lambda: b.select("gpu")),
                ("scan", lambda now=now: scan(listed, None, now)),
                ("select_label", lambda: b.select("gpu", {"zone": "z0"})),
                ("scan_label", lambda now=now: scan(listed, {"zone": "z0"}, now)),
            ]
            for name, fn in pair if r % 2 == 0 else reversed(pair):
                keep(name, time_sync(fn, calls))
            writes: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("ping", lambda: floor.ping()),
                ("heartbeat", lambda: a.heartbeat("hb", running=1)),
                ("register", lambda: a.register("reg", pool="bench", capacity=2)),
            ]
            for name, afn in writes if r % 2 == 0 else reversed(writes):
                keep(name, await time_async(afn, calls))

            async def converge() -> None:
                node = await a.heartbeat("hb", running=2)
                await b.wait_revision(node.revision, timeout_s=5)

            keep("convergence", await time_async(converge, max(50, calls // 4)))

        # reads with Redis stopped, and the recovery after
        server.pause()
        try:
            await b.wait_status("degraded", timeout_s=5)
            stopped_select = time_sync(lambda: b.select("gpu"), calls * rounds)
        finally:
            await asyncio.sleep(1.0)  # the outage lasts a second, by the clock
            server.cont()
        t = time.perf_counter()
        await b.wait_status("normal", timeout_s=30)
        recovery_s = time.perf_counter() - t
        cold = Registry(url, **opts)
        t = time.perf_counter()
        await cold.start()
        cold_start_s = time.perf_counter() - t
        cold_nodes = len(cold.nodes())
        await cold.close()
    finally:
        await floor.aclose()
        await a.close()
        await b.close()

    def med(name: str, q: str) -> float:
        return statistics.median(run[q] for run in runs[name])

    def ratio(name: str, base: str, q: str) -> float:
        return statistics.median(x[q] / y[q] for x, y in zip(runs[name], runs[base], strict=True))

    out: dict[str, Any] = {"runs": runs}
    for name in runs:
        out[name] = {q: med(name, q) for q in ("p50", "p99")}
    out["ratios"] = {
        f"{name}/{base}": {q: ratio(name, base, q) for q in ("p50", "p99")}
        for name, base in (
            ("select", "scan"),
            ("select_label", "scan_label"),
            ("heartbeat", "ping"),
            ("register", "ping"),
            ("convergence", "heartbeat"),
        )
    }
    out["select_redis_stopped"] = summary_us(stopped_select)
    out["recovery_s"] = recovery_s
    out["cold_start_s"] = cold_start_s
    out["cold_start_nodes"] = cold_nodes
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100 nodes, 200 calls, 1 round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.calls, args.rounds = 100, 200, 1
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    server = started_server()
    try:
        result = asyncio.run(measure(server, nodes=args.nodes, calls=args.calls, rounds=args.rounds))
    finally:
        server.destroy()
    result["meta"] = {"nodes": args.nodes, "calls": args.calls, "rounds": args.rounds}
    print(f"{args.nodes} nodes, {args.calls} calls x {args.rounds} rounds (medians of per-round quantiles)")
    print(f"{'measurement':<28}{'p50':>12}{'p99':>12}")
    names = ("select", "scan", "select_label", "scan_label", "ping", "heartbeat", "register", "convergence")
    for name in names:
        print(f"{name:<28}{result[name]['p50']:>10.1f}us{result[name]['p99']:>10.1f}us")
    s = result["select_redis_stopped"]
    print(f"{'select, redis stopped':<28}{s['p50']:>10.1f}us{s['p99']:>10.1f}us")
    for name, r in result["ratios"].items():
        print(f"ratio {name:<22}{r['p50']:>12.3f}{r['p99']:>12.3f}")
    print(f"recovery after SIGCONT: {result['recovery_s'] * 1e3:.0f} ms; ", end="")
    print(f"cold start with {result['cold_start_nodes']} nodes: {result['cold_start_s'] * 1e3:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
