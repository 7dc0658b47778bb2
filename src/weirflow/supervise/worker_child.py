"""The child side of ``weirflow worker --processes N``: one durable ``Worker`` per process.

``main`` is the entry of each worker child (``weirflow.supervise.child``): it loads
the flows, builds the ``Worker`` (``exit_after_grace``: a plain ``def`` handler's thread
cannot be stopped, so the process ends once the grace is over and the leases are
released), and answers over its pipe:

- ``status``: the health check (``{"worker_id", "running", "completed", "failed",
  "lost", "stopping", "metrics"}``; ``metrics``: the ``QueueMetrics.snapshot()`` of what
  this worker counted, which the supervisor serves with ``--metrics-port``);
- ``stop``: stop claiming at once and shut down (the answer says it has begun): running
  jobs get the grace period, then they are cancelled, the engine's child processes
  killed and the leases released so another worker resumes those jobs at once.

SIGTERM does what ``stop`` does (the supervisor sends it when ``stop`` gets no answer).
Once the worker has stopped, a last ``metrics`` notification says what it counted since
its last health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from ..durable.metrics import QueueMetrics
from ..durable.worker import Worker
from ..errors import SuperviseError
from ..flow.source import load_flows
from .channel import Channel


async def main(channel: Channel, arg: dict[str, Any]) -> int:
    """Run one worker until it is told to stop (see the module docstring)."""
    flows = load_flows(arg["flows"])
    metrics = QueueMetrics()
    worker = Worker(arg["store"], flows, exit_after_grace=True, metrics=metrics, **arg["worker"])
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)

    async def status(_: Any) -> dict[str, Any]:
        return {
            "worker_id": worker.worker_id,
            "running": len(worker.running),
            "completed": worker.completed,
            "failed": worker.failed,
            "lost": worker.lost,
            "stopping": worker.stopping,
            "metrics": metrics.snapshot(),
        }

    async def stop(_: Any) -> dict[str, Any]:
        worker.stop()
        return {"stopping": True}

    channel.handle("status", status)
    channel.handle("stop", stop)
    await channel.ready({"worker_id": worker.worker_id, "pid": os.getpid()})
    await worker.run()
    # what it counted since its last health check (the jobs it just released too)
    with contextlib.suppress(OSError, SuperviseError):
        await channel.notify("metrics", metrics.snapshot())
    return 0
