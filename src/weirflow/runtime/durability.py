"""``DurableJobs``: what the engine needs of a store of durable jobs.

The runtime never imports ``weirflow.durable``: an ``Engine`` reaches the store only
through this protocol (``Engine.use_durable``), which ``weirflow.durable.DurableClient``
implements. ``wf.Engine`` (``weirflow.engine``) wires one in for ``store=URL``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class DurableJobs(Protocol):
    """Submitting durable jobs to a store and reading them back."""

    @property
    def store(self) -> Any:
        """The store itself (a ``weirflow.durable.Store``)."""

    async def open(self) -> object:
        """Open the store (idempotent); the engine calls it at ``async with`` or first use."""

    async def close(self) -> None:
        """Close the store, if it was opened."""

    async def submit(self, flow: str, inputs: dict[str, Any] | None, **options: Any) -> str:
        """Queue a job of the registered flow ``flow`` (``Engine.submit``'s options); its id."""

    async def submit_many(self, jobs: Iterable[Any], **options: Any) -> list[str]:
        """Queue many jobs in one transaction (``Engine.submit_many``); their ids in order."""

    async def get_job(self, job_id: str) -> Any:
        """The job's status, attempt, error and steps (a ``weirflow.durable.JobInfo``)."""

    async def wait_job(self, job_id: str, timeout_s: float | None) -> Any:
        """Wait until the job is completed, failed or cancelled; return ``get_job``'s answer."""

    async def schedule(self, name: str, flow: str, inputs: dict[str, Any] | None, **options: Any) -> Any:
        """Create or replace a schedule of the registered flow ``flow`` (``Engine.schedule``'s
        options); the stored ``weirflow.durable.schedules.Schedule``."""

    async def unschedule(self, name: str) -> bool:
        """Remove a schedule; ``False`` if there was none."""

    async def schedules(self, queue: str | None) -> list[Any]:
        """The schedules (of ``queue``), by name."""
