"""CPU per step of ``benchmarks.durable_chain``: the process's user + system time over each
side's timed part, in memory, on SQLite and on PostgreSQL, rounds interleaved in one process.

``python -m benchmarks.durable_chain_cpu [N] [ROUNDS]`` (20,000 items, 3 rounds) prints one
JSON object: µs of CPU per step for each side and round, the CPU ratios (memory / side, of
the medians), and how many ``append_journal`` calls each PostgreSQL run made. CPU time moves
less with the machine's load than wall time does (the process's own work, not the time it
waited for a core), though cache effects of the other processes still reach it. Run it in
the trees to compare, alternately.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import weirflow as wf
from weirflow.durable import JobSpec, open_store
from weirflow.durable.journal import DurableJournal

from .durable_chain import HEAD, STAGES, _check
from .flows import chain


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _memory(n: int) -> float:
    flow = chain(stages=STAGES)
    items = list(range(n))
    async with wf.Engine() as engine:
        c0 = _cpu()
        job = await engine.start(flow, {HEAD: items})
        result = await job.wait()
        spent = _cpu() - c0
    _check(result, n)
    return spent


async def _durable(n: int, url: str) -> tuple[float, int]:
    flow = chain(stages=STAGES)
    items = list(range(n))
    store = open_store(url)
    await store.open()
    appends = 0
    append = store.append_journal

    async def counted(*args: Any, **kwargs: Any) -> list[str]:
        nonlocal appends
        appends += 1
        return await append(*args, **kwargs)

    store.append_journal = counted  # type: ignore[method-assign]
    try:
        job_id = await store.submit(JobSpec(flow=flow.name, inputs={HEAD: items}))
        journal = DurableJournal(store, drop_completed=False)
        async with wf.Engine(journal=journal) as engine:
            c0 = _cpu()
            job = await engine.start(flow, {HEAD: items}, job_id=job_id)
            result = await job.wait()
            await journal.flush()
            spent = _cpu() - c0
        _check(result, n)
        return spent, appends
    finally:
        await store.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    from tests.durable.pgserver import started_server

    pg = started_server()
    per_step: dict[str, list[float]] = {"memory": [], "sqlite": [], "postgres": []}
    appends: list[int] = []
    steps = n * STAGES
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rnd in range(rounds):
                gc.collect()
                per_step["memory"].append(asyncio.run(_memory(n)) / steps * 1e6)
                gc.collect()
                spent, _ = asyncio.run(_durable(n, f"sqlite:///{Path(tmp) / f'chain{rnd}.db'}"))
                per_step["sqlite"].append(spent / steps * 1e6)
                gc.collect()
                spent, made = asyncio.run(_durable(n, pg.new_database()))
                per_step["postgres"].append(spent / steps * 1e6)
                appends.append(made)
    finally:
        pg.destroy()
    med = {side: statistics.median(v) for side, v in per_step.items()}
    out = {
        "items": n,
        "cpu_us_per_step": {side: [round(x, 3) for x in v] for side, v in per_step.items()},
        "cpu_ratio": {side: round(med["memory"] / med[side], 3) for side in ("sqlite", "postgres")},
        "postgres_appends": appends,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
