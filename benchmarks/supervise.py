"""Supervised pipelines: detection, replacement, health-check cost, start, shutdown.

``python -m benchmarks.supervise [--kills N] [--starts N] [--children N] [--json PATH]``

- dead-child detection: a child (``ChildProcess``) is killed with SIGKILL; the time
  from ``os.kill`` until ``child.exited`` is set (the sentinel seen by the event
  loop), against a thread blocked in ``os.waitpid`` on another child killed the
  same way (the floor: the kernel's own notice), interleaved;
- hung-child replacement: a pipeline's child is SIGSTOPped; the time until the
  supervisor has replaced it (``restarting``), with ``health_interval_s=0.5`` and
  ``health_failures=3`` (bound: interval x failures + deadline + 1 s);
- health checks with N children (default 50): the supervisor's CPU time per second
  and per check, over a 5 s window, at ``health_interval_s=1``;
- start latency, warm (``warm=1``: a spare is waiting) against cold (``warm=0``: a
  spawn), interleaved rounds, p50/p99;
- shutdown of N = 1, 10, 50 pipelines (half of them never drain, so they are
  killed after the grace): the time ``close()`` takes with ``grace_s=1``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from typing import Any

import psutil

import weirflow as wf
from weirflow.supervise import ChildProcess
from weirflow.supervise.channel import Channel

FLOWS = "benchmarks.supervise"


@wf.routine
def echo(item: Any) -> Any:
    return item


class Ticker(wf.Routine):
    start = wf.Slot()
    ticks = wf.Event()

    @start.handler
    async def run(self, n: int, ctx: wf.Context) -> None:
        i = 0
        while n < 0 or i < n:
            await ctx.emit(self.ticks, i)
            i += 1


echo_flow = wf.Flow("echo")
echo_flow.add("echo", echo)
echo_flow.output("echo.output")
ticker = wf.Flow("ticker")
ticker.add("src", Ticker())
ticker.output("src.ticks")


async def idle_main(channel: Channel, arg: Any) -> int:
    await channel.ready()
    await asyncio.Event().wait()
    return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {"p50_ms": round(pct(ms, 0.5), 3), "p99_ms": round(pct(ms, 0.99), 3), "n": len(ms)}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def detection(rounds: int) -> dict[str, Any]:
    ours: list[float] = []
    floor: list[float] = []
    for i in range(rounds):
        for side in ("ours", "floor") if i % 2 == 0 else ("floor", "ours"):
            child = ChildProcess("benchmarks.supervise:idle_main")
            await child.start(60)
            pid = child.pid
            assert pid is not None
            if side == "ours":
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                await child.exited.wait()
                ours.append(time.perf_counter() - t0)
            else:
                # a thread blocked in waitpid (the process is ours: multiprocessing's popen
                # would reap it too, so the wait is on a duplicate handle: the sentinel fd
                # being closed is exactly what waitpid would report)
                seen = threading.Event()
                assert child.process is not None
                sentinel = child.process.sentinel
                loop = asyncio.get_running_loop()
                loop.remove_reader(sentinel)

                def block(fd: int = sentinel, seen: threading.Event = seen) -> None:
                    from multiprocessing.connection import wait

                    wait([fd])
                    seen.set()

                thread = threading.Thread(target=block)
                thread.start()
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                await asyncio.to_thread(seen.wait)
                floor.append(time.perf_counter() - t0)
                thread.join()
                loop.add_reader(sentinel, child._sentinel)
                await child.exited.wait()
            await child.close()
    out = {"ours": summary_ms(ours), "thread_wait_floor": summary_ms(floor)}
    out["ratio_p50"] = round(out["ours"]["p50_ms"] / max(out["thread_wait_floor"]["p50_ms"], 1e-9), 2)
    return out


async def hung_replacement(rounds: int) -> dict[str, Any]:
    interval_s, failures = 0.5, 3
    took: list[float] = []
    deadlines: list[float] = []
    async with wf.Supervisor(
        flows=FLOWS, warm=1, health_interval_s=interval_s, health_failures=failures
    ) as sup:
        p = await sup.start("echo")
        for _ in range(rounds):
            await sup.wait_healthy(p.id, timeout_s=30)
            info = sup.get(p.id)
            deadlines.append(info.health["deadline_s"])
            replaced = asyncio.ensure_future(sup.wait_state(p.id, "restarting", timeout_s=60))
            t0 = time.perf_counter()
            os.kill(info.pid or -1, signal.SIGSTOP)
            await replaced
            took.append(time.perf_counter() - t0)
            await sup.wait_state(p.id, "running", timeout_s=60)
    bound = interval_s * failures + max(deadlines) + 1
    return {
        "seconds": [round(t, 3) for t in took],
        "max_s": round(max(took), 3),
        "bound_s": round(bound, 3),
        "interval_s": interval_s,
        "failures": failures,
    }


async def start_n(sup: wf.Supervisor, n: int) -> list[wf.PipelineInfo]:
    starts = [
        sup.start("ticker", {"src.start": [-1]}) if i % 2 else sup.start("echo", {"echo.input": [i]})
        for i in range(n)
    ]
    return list(await asyncio.gather(*starts))


async def health_overhead(n: int, window_s: float = 5.0) -> dict[str, Any]:
    me = psutil.Process()
    sup = wf.Supervisor(flows=FLOWS, health_interval_s=1.0, grace_s=1.0)
    async with sup:
        log(f"  starting {n} children")
        await start_n(sup, n)
        for p in sup.pipelines():  # every child checked once: the intervals have grown
            await sup.wait_healthy(p.id, timeout_s=60)
        before_checks = sup.metrics.commands["status"].count
        cpu0 = sum(me.cpu_times()[:2])
        t0 = time.perf_counter()
        await asyncio.sleep(window_s)  # the measurement window itself
        elapsed = time.perf_counter() - t0
        cpu = sum(me.cpu_times()[:2]) - cpu0
        checks = sup.metrics.commands["status"].count - before_checks
        failures = sum(sup.metrics.health_failures.values())
        p50s = [p.health["rtt_ms"]["p50"] for p in sup.pipelines() if p.health["rtt_ms"]["p50"] is not None]
        t1 = time.perf_counter()
    shutdown_s = time.perf_counter() - t1
    return {
        "children": n,
        "checks_per_s": round(checks / elapsed, 1),
        "supervisor_cpu_percent_of_one_core": round(100 * cpu / elapsed, 2),
        "cpu_ms_per_check": round(1000 * cpu / max(checks, 1), 3),
        "failed_checks": failures,
        "rtt_p50_ms_median_over_children": round(statistics.median(p50s), 3) if p50s else None,
        "shutdown_s": round(shutdown_s, 3),
    }


async def start_latency(rounds: int) -> dict[str, Any]:
    warm: list[float] = []
    cold: list[float] = []
    async with (
        wf.Supervisor(flows=FLOWS, warm=1, grace_s=1.0) as hot,
        wf.Supervisor(flows=FLOWS, warm=0, grace_s=1.0) as fresh,
    ):
        for i in range(rounds):
            for side in ("warm", "cold") if i % 2 == 0 else ("cold", "warm"):
                sup = hot if side == "warm" else fresh
                if side == "warm":
                    assert sup.pool is not None
                    await asyncio.wait_for(sup.pool.wait_spare(), 60)
                t0 = time.perf_counter()
                p = await sup.start("echo")
                (warm if side == "warm" else cold).append(time.perf_counter() - t0)
                await sup.stop(p.id)
        assert hot.pool is not None and hot.pool.cold_starts == 0
    out = {"warm": summary_ms(warm), "cold": summary_ms(cold)}
    out["ratio_p50_warm_over_cold"] = round(out["warm"]["p50_ms"] / out["cold"]["p50_ms"], 3)
    return out


async def shutdown(sizes: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    grace_s = 1.0
    for n in sizes:
        sup = wf.Supervisor(flows=FLOWS, grace_s=grace_s)
        async with sup:
            log(f"  starting {n} pipelines")
            infos = await start_n(sup, n)
            t0 = time.perf_counter()
        took = time.perf_counter() - t0
        left = [p.pid for p in infos if p.pid is not None and psutil.pid_exists(p.pid)]
        alive = [pid for pid in left if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        out[str(n)] = {"seconds": round(took, 3), "bound_s": grace_s + 1, "left_alive": len(alive)}
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    log("dead-child detection")
    result["detection"] = await detection(args.kills)
    log("hung-child replacement")
    result["hung_replacement"] = await hung_replacement(args.hangs)
    log("start latency, warm vs cold")
    result["start"] = await start_latency(args.starts)
    log(f"health checks with {args.children} children")
    result["health_overhead"] = await health_overhead(args.children)
    log("shutdown")
    result["shutdown"] = await shutdown(args.shutdown)
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--hangs", type=int, default=3)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--children", type=int, default=50)
    parser.add_argument("--shutdown", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--json", metavar="PATH")
    ns = parser.parse_args()
    data = asyncio.run(main(ns))
    text = json.dumps(data, indent=2)
    print(text)
    if ns.json:
        with open(ns.json, "w") as f:
            f.write(text + "\n")
