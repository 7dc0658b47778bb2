"""The DBOS side of ``benchmarks.durable_vs``: M workflows of three no-op steps on the
PostgreSQL database at URL, started with ``DBOS.start_workflow_async`` and awaited; prints
workflows/s. ``python -m benchmarks.dbos_steps URL M`` (DBOS keeps one global instance per
process, so each measurement runs in a process of its own)."""

from __future__ import annotations

import asyncio
import sys
import time

from dbos import DBOS, DBOSConfig


@DBOS.step()
async def step(x: int) -> int:
    return x


@DBOS.workflow()
async def three_steps(x: int) -> int:
    a = await step(x)
    b = await step(a)
    return await step(b)


async def main(url: str, m: int) -> float:
    config: DBOSConfig = {"name": "bench", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.launch()
    try:
        await DBOS.start_workflow_async(three_steps, -1)  # warm up
        t0 = time.perf_counter()
        handles = await asyncio.gather(*(DBOS.start_workflow_async(three_steps, i) for i in range(m)))
        results = await asyncio.gather(*(h.get_result() for h in handles))
        dt = time.perf_counter() - t0
        assert results == list(range(m))
    finally:
        DBOS.destroy()
    return m / dt


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
