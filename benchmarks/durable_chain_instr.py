"""``benchmarks.durable_chain``'s timed part alone, one side at a time, for callgrind.

``python -m benchmarks.durable_chain_instr SIDE N``: ``SIDE`` is ``memory`` (the chain in
memory), ``sqlite`` or ``postgres`` (a ``DurableJournal`` alone, ``drop_completed=False``,
as ``benchmarks.durable_chain`` runs it), or ``worker`` (a durable worker's journals on
SQLite: ``Journals(StartFence, DurableJournal)``, what a worker with ``record_steps=False``
installs). Instructions per step, start-up and the PostgreSQL server's start left out
(the server runs in processes of its own, which callgrind does not follow)::

    PYTHONPATH=src:. valgrind --tool=callgrind --dump-instr=no --callgrind-out-file=/dev/null \\
        .venv/bin/python -m benchmarks.durable_chain_instr sqlite 30000
    # (total at 30000 - total at 10000) / 60000 steps (3 routines)

Under callgrind the process runs about 50 times slower while the store does not, so a
PostgreSQL run commits in more, smaller batches than it does at full speed.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import weirflow as wf
from weirflow.durable import JobSpec, open_store
from weirflow.durable.journal import DurableJournal
from weirflow.durable.steps import StartFence

from .durable_chain import HEAD, STAGES, _check, in_memory
from .flows import chain


def _allowed(job_id: str) -> bool:
    return True


async def durable(n: int, url: str, *, worker: bool = False) -> None:
    flow = chain(stages=STAGES)
    items = list(range(n))
    store = open_store(url)
    await store.open()
    try:
        job_id = await store.submit(JobSpec(flow=flow.name, inputs={HEAD: items}))
        journal = DurableJournal(store, drop_completed=False)
        installed: wf.Journal = wf.Journals(StartFence(_allowed), journal) if worker else journal
        async with wf.Engine(journal=installed) as engine:
            job = await engine.start(flow, {HEAD: items}, job_id=job_id)
            result = await job.wait()
            await journal.flush()
        _check(result, n)
    finally:
        await store.close()


def main() -> None:
    side, n = sys.argv[1], int(sys.argv[2])
    if side == "memory":
        asyncio.run(in_memory(n))
    elif side in ("sqlite", "worker"):
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(durable(n, f"sqlite:///{Path(tmp) / 'chain.db'}", worker=side == "worker"))
    elif side == "postgres":
        from tests.durable.pgserver import started_server

        pg = started_server()
        try:
            asyncio.run(durable(n, pg.new_database()))
        finally:
            pg.destroy()
    else:
        raise SystemExit(f"unknown side {side!r}: memory, sqlite, postgres or worker")


if __name__ == "__main__":
    main()
