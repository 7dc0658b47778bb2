"""The live progress display of ``weirflow run`` and ``demo``, drawn on stderr.

It only reads the job's statistics (``job.stats.routines`` and ``job.queues()``)
from a task on the job's event loop a few times a second; it never touches items.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..runtime.job import Job

REFRESH_S = 0.2

_STATE_STYLE = {"ok": "green", "near_full": "yellow", "full": "red", "paused": "blue"}


def render(job: Job) -> Group:
    """Two tables: calls per routine, and fill per slot."""
    stats = job.stats
    routines = Table(
        title=f"{job.flow.name} · {job.status.value} · {stats.duration_s:.1f}s", title_justify="left"
    )
    routines.add_column("routine")
    routines.add_column("calls", justify="right")
    routines.add_column("active", justify="right")
    routines.add_column("failures", justify="right")
    for name, r in stats.routines.items():
        routines.add_row(name, str(r.calls), str(r.active), str(r.failures))
    slots = Table()
    slots.add_column("slot")
    slots.add_column("fill", width=24)
    slots.add_column("queued", justify="right")
    slots.add_column("processed", justify="right")
    slots.add_column("state")
    for path, q in stats.slots.items():
        slots.add_row(
            path,
            ProgressBar(total=q.capacity, completed=q.size, width=24),
            f"{q.size}/{q.capacity}",
            str(q.processed),
            Text(q.state, style=_STATE_STYLE.get(q.state, "")),
        )
    return Group(routines, slots)


async def _refresh(live: Live, job: Job) -> None:
    while True:
        live.update(render(job), refresh=True)
        await asyncio.sleep(REFRESH_S)  # UI refresh rate, not a wait for job state


@contextlib.asynccontextmanager
async def show_progress(job: Job, console: Console) -> AsyncIterator[None]:
    """Draw ``job``'s progress on ``console`` until the block exits, then draw it once more."""
    with Live(render(job), console=console, auto_refresh=False, transient=False) as live:
        task = asyncio.create_task(_refresh(live, job))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            live.update(render(job), refresh=True)
