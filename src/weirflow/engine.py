"""``wf.Engine``: the runtime's engine, with a store of durable jobs for ``store=``.

The runtime reaches a store only through its ``DurableJobs`` protocol and imports
nothing from ``weirflow.durable``; this module sits above both and wires a
``DurableClient`` in. Everything else is ``weirflow.runtime.Engine``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .durable.client import DurableClient
from .runtime.dead_letters import DEFAULT_MAX_DEAD_LETTERS
from .runtime.engine import Engine as RuntimeEngine

if TYPE_CHECKING:
    from .durable.models import JobInfo
    from .durable.store import Store
    from .runtime.hooks import Hooks
    from .runtime.journal import Journal


class Engine(RuntimeEngine):
    """Runs jobs on the current asyncio loop (see ``weirflow.runtime.Engine``).

    ``store`` (a URL such as ``"sqlite:///weirflow.db"``, or a ``weirflow.durable.Store``)
    enables ``submit`` and ``get_job``; it is opened at ``async with`` (or first use)
    and closed by ``close()``.
    """

    def __init__(
        self,
        *,
        hooks: Iterable[Hooks] = (),
        journal: Journal | None = None,
        max_threads: int | None = None,
        max_processes: int | None = None,
        store: str | Store | None = None,
        max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS,
    ) -> None:
        super().__init__(
            hooks=hooks,
            journal=journal,
            max_threads=max_threads,
            max_processes=max_processes,
            max_dead_letters=max_dead_letters,
        )
        self._client = DurableClient(self, store) if store is not None else None
        if self._client is not None:
            self.use_durable(self._client)

    @property
    def store(self) -> Store | None:
        """The durable store given as ``store=`` (``None`` without one)."""
        return self._client.store if self._client is not None else None

    async def get_job(self, job_id: str) -> JobInfo:
        """A durable job's status, attempt, error and steps (``JobError`` if unknown)."""
        info: JobInfo = await super().get_job(job_id)
        return info

    async def wait_job(self, job_id: str, *, timeout_s: float | None = None) -> JobInfo:
        """Wait until the durable job is completed, failed or cancelled and return its
        ``JobInfo`` (see ``weirflow.runtime.Engine.wait_job``)."""
        info: JobInfo = await super().wait_job(job_id, timeout_s=timeout_s)
        return info
