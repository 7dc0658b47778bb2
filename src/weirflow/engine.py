"""``wf.Engine``: the runtime's engine, with a store of durable jobs for ``store=``.

The runtime reaches a store only through its ``DurableJobs`` protocol and imports
nothing from ``weirflow.durable``; this module sits above both and wires a
``DurableClient`` in. Everything else is ``weirflow.runtime.Engine``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .durable.client import DurableClient
from .errors import JobError
from .runtime.dead_letters import DEFAULT_MAX_DEAD_LETTERS
from .runtime.engine import Engine as RuntimeEngine

if TYPE_CHECKING:
    from .cluster.dispatch import Dispatcher
    from .cluster.registry import Registry
    from .durable.models import JobInfo
    from .durable.store import Store
    from .runtime.hooks import Hooks
    from .runtime.journal import Journal


class Engine(RuntimeEngine):
    """Runs jobs on the current asyncio loop (see ``weirflow.runtime.Engine``).

    ``store`` (a URL such as ``"sqlite:///weirflow.db"``, or a ``weirflow.durable.Store``)
    enables ``submit`` and ``get_job``; it is opened at ``async with`` (or first use)
    and closed by ``close()``. ``registry`` (a ``redis://`` URL, or a started
    ``weirflow.cluster.Registry``) lets ``submit(..., pool=, labels=)`` assign jobs to the
    cluster's nodes (docs/cluster.md); a URL's registry is started and closed with the store.
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
        registry: str | Registry | None = None,
    ) -> None:
        super().__init__(
            hooks=hooks,
            journal=journal,
            max_threads=max_threads,
            max_processes=max_processes,
            max_dead_letters=max_dead_letters,
        )
        placer: Dispatcher | None = None
        if registry is not None:
            if store is None:
                raise JobError("registry= dispatches durable jobs: give store= too")
            from .cluster.dispatch import Dispatcher
            from .cluster.registry import Registry as ClusterRegistry

            owned = isinstance(registry, str)
            reg = ClusterRegistry(registry) if isinstance(registry, str) else registry
            placer = Dispatcher(reg, owns=owned)
        self.dispatcher = placer
        self._client = DurableClient(self, store, placer=placer) if store is not None else None
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
