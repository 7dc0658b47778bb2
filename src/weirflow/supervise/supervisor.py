"""``wf.Supervisor``: long-running pipelines, each in a child process of its own.

```python
async with wf.Supervisor(flows="mypkg.flows", warm=2, health_interval_s=1.0) as sup:
    p = await sup.start("camera", {"src.url": ["rtsp://..."]}, name="cam-1", restart="permanent")
    items = await sup.results(p.id, max_items=100, wait_s=1.0)
```

The supervisor is the one owner of its state: the table of ``Pipeline`` records
(each supervising its own child, see ``weirflow.supervise.pipeline``), the warm
pool and the metrics. It runs on one event loop, so the table needs no lock, and no
command holds anything while it waits for a child. Leaving the ``async with``
stops every pipeline at once, in parallel: the whole shutdown takes at most
``grace_s`` plus about a second, whatever the number of pipelines.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from ..errors import InvalidCommand, PipelineNotFound, PipelineStateError, SuperviseError
from ..flow.graph import Flow
from ..flow.source import check_unique, load_flows
from .child import ChildProcess
from .framing import DEFAULT_MAX_FRAME_BYTES
from .metrics import STATES, SupervisorMetrics
from .pipeline import Pipeline, PipelineInfo, Timing
from .pipeline_child import ENTRY
from .pool import WarmPool
from .restart import DEFAULT_INTENSITY, DEFAULT_PERIOD_S, RestartTracker
from .results import DEFAULT_RESULTS_CAPACITY, ResultsBuffer
from .sends import (
    DEFAULT_DEAD_LETTERS_CAPACITY,
    DeadLetters,
    PipelineDeadLetter,
    SendWindow,
)
from .settings import SuperviseSettings, load_supervise_settings

DEFAULT_PAUSE_TIMEOUT_S = 10.0
#: ``close()``: the part of its extra second kept for killing what did not stop in time
CLOSE_KILL_S = 0.25


class Supervisor:
    """Supervised pipelines of the flows in ``flows`` (a ``--flows`` source: directory,
    flow file or module; or ``Flow`` objects, which must pickle).

    Settings not given come from ``WEIRFLOW_*`` (``SuperviseSettings``) and are
    validated now: a bad one raises ``SuperviseSettingsError``."""

    def __init__(
        self,
        *,
        flows: str | Iterable[Flow],
        warm: int | None = None,
        health_interval_s: float | None = None,
        health_failures: int | None = None,
        grace_s: float | None = None,
        max_rss_mb: float | None = None,
        settings: SuperviseSettings | None = None,
        results_capacity: int = DEFAULT_RESULTS_CAPACITY,
        unacked_capacity: int | None = None,
        dead_letters_capacity: int = DEFAULT_DEAD_LETTERS_CAPACITY,
        intensity: int = DEFAULT_INTENSITY,
        period_s: float = DEFAULT_PERIOD_S,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 10.0,
        stable_s: float = 30.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        keep_finished: int | None = None,
    ) -> None:
        self.settings = settings or load_supervise_settings(
            warm=warm,
            health_interval_s=health_interval_s,
            health_failures=health_failures,
            grace_s=grace_s,
            max_rss_mb=max_rss_mb,
        )
        if unacked_capacity is None:
            unacked_capacity = self.settings.unacked_capacity
        for option, value in (
            ("results_capacity", results_capacity),
            ("unacked_capacity", unacked_capacity),
            ("dead_letters_capacity", dead_letters_capacity),
        ):
            if value < 1:
                raise InvalidCommand(f"{option} must be at least 1")
        if keep_finished is None:
            keep_finished = self.settings.keep_finished  # (``WEIRFLOW_KEEP_FINISHED``, ``--keep-finished``)
        if keep_finished < 0:
            raise InvalidCommand("keep_finished must be at least 0")
        self.keep_finished = keep_finished
        loaded = load_flows(flows) if isinstance(flows, str) else list(flows)
        check_unique(loaded)
        self.flows: dict[str, Flow] = {f.name: f for f in loaded}
        self._source: str | list[Flow] = flows if isinstance(flows, str) else loaded
        self.results_capacity = results_capacity
        self.unacked_capacity = unacked_capacity
        self.dead_letters_capacity = dead_letters_capacity
        self.restart_options: dict[str, Any] = {
            "intensity": intensity,
            "period_s": period_s,
            "initial_s": backoff_initial_s,
            "max_s": backoff_max_s,
            "stable_s": stable_s,
        }
        self.max_frame_bytes = max_frame_bytes
        self.timing = Timing(
            health_interval_s=self.settings.health_interval_s,
            health_failures=self.settings.health_failures,
            grace_s=self.settings.grace_s,
        )
        self.metrics = SupervisorMetrics()
        self.metrics.snapshot = self._snapshot
        self._pipelines: dict[str, Pipeline] = {}
        self._pool: WarmPool | None = None
        self._closed = False

    # -- lifetime -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Start the warm pool (it fills in the background)."""
        if self._pool is None:
            self._pool = WarmPool(size=self.settings.warm, make=self._make_child)
            self._pool.fill()

    async def close(self, grace_s: float | None = None) -> None:
        """Stop every pipeline and spare, all in parallel (``grace_s``: the settings')."""
        self._closed = True
        grace = self.settings.grace_s if grace_s is None else grace_s
        live = [p for p in self._pipelines.values() if not p.done]
        pool = self._pool
        closing = asyncio.ensure_future(pool.close()) if pool is not None else None
        stops = asyncio.gather(*(p.stop(grace) for p in live), return_exceptions=True)
        try:
            # the promise is grace_s plus a second, whatever goes wrong in a stop: what is
            # left then is killed, and the kill needs its moment within that second too
            await asyncio.wait_for(stops, grace + 1.0 - CLOSE_KILL_S)
        except TimeoutError:
            await asyncio.gather(*(p.kill() for p in live), return_exceptions=True)
        if closing is not None:
            await asyncio.gather(closing, return_exceptions=True)

    def _make_child(self) -> ChildProcess:
        return ChildProcess(
            ENTRY,
            {"flows": self._source},
            name="weirflow-pipeline",
            max_frame_bytes=self.max_frame_bytes,
            # not daemonic: a job's executor = "process" routines start processes of their own
            # (multiprocessing refuses them in a daemonic one); no orphans all the same: the
            # child dies with this process (PR_SET_PDEATHSIG, the pipe's end) and its process
            # executor's children with it (they watch their parent's sentinel)
            daemon=False,
        )

    async def _take_child(self) -> ChildProcess:
        if self._pool is None:
            await self.open()
        assert self._pool is not None
        return await self._pool.take()

    @property
    def pool(self) -> WarmPool | None:
        return self._pool

    def _snapshot(self) -> tuple[list[tuple[str, str, str, float | None]], int]:
        rows = [
            (p.id, p.name, p.state, None if p.rss_mb is None else p.rss_mb * 1024 * 1024)
            for p in list(self._pipelines.values())
        ]
        return rows, len(self._pool.spares) if self._pool is not None else 0

    # -- pipelines ----------------------------------------------------------------------

    async def start(
        self,
        flow: str,
        inputs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        restart: str = "permanent",
        max_rss_mb: float | None = None,
    ) -> PipelineInfo:
        """Start a pipeline: a job of ``flow`` with ``inputs`` in a child process; returns
        once the job runs. ``InvalidCommand`` for an unknown flow or slot or a bad option."""
        if self._closed:
            raise PipelineStateError("the supervisor is shut down", "stopped")
        if flow not in self.flows:
            known = ", ".join(sorted(self.flows)) or "none"
            raise InvalidCommand(f"no flow named {flow!r} (flows: {known})")
        if max_rss_mb is not None and not max_rss_mb > 0:
            raise InvalidCommand(f"max_rss_mb must be above 0, not {max_rss_mb!r}")
        try:
            tracker = RestartTracker(policy=restart, **self.restart_options)
        except ValueError as e:
            raise InvalidCommand(str(e)) from None
        pipeline_id = uuid.uuid4().hex[:12]
        pipeline = Pipeline(
            pipeline_id=pipeline_id,
            name=name or f"{flow}-{pipeline_id[:6]}",
            flow=flow,
            inputs=dict(inputs or {}),
            tracker=tracker,
            max_rss_mb=max_rss_mb if max_rss_mb is not None else self.settings.max_rss_mb,
            timing=self.timing,
            results=ResultsBuffer(self.results_capacity),
            metrics=self.metrics,
            take_child=self._take_child,
            window=SendWindow(self.unacked_capacity),
            dead_letters=DeadLetters(pipeline_id, self.dead_letters_capacity),
        )
        self._forget_oldest_finished()
        self._pipelines[pipeline_id] = pipeline
        try:
            await asyncio.shield(pipeline.started)
        except SuperviseError:
            if pipeline.state == "failed" and pipeline.tracker.count == 0:
                del self._pipelines[pipeline_id]  # refused at once: the caller's bad input
            raise
        return pipeline.info()

    def _forget_oldest_finished(self) -> None:
        """Keep at most ``keep_finished`` finished pipelines (the oldest started go first),
        so a long-lived supervisor whose clients start and stop pipelines stays bounded."""
        finished = [pid for pid, p in self._pipelines.items() if p.done]
        for pid in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._pipelines[pid]

    def forget(self, pipeline_id: str) -> PipelineInfo:
        """Remove a finished (``stopped`` or ``failed``) pipeline, its results buffer with it
        (what was left in it is gone); returns it one last time. ``PipelineStateError``
        while it is not finished: stop it first."""
        pipeline = self._get(pipeline_id)
        if not pipeline.done:
            raise PipelineStateError(
                f"pipeline {pipeline_id!r} is {pipeline.state}: stop it before removing it", pipeline.state
            )
        del self._pipelines[pipeline_id]
        return pipeline.info()

    def _get(self, pipeline_id: str) -> Pipeline:
        pipeline = self._pipelines.get(pipeline_id)
        if pipeline is None:
            raise PipelineNotFound(pipeline_id)
        return pipeline

    def get(self, pipeline_id: str) -> PipelineInfo:
        """The pipeline as it is now (no I/O); ``PipelineNotFound``."""
        return self._get(pipeline_id).info()

    def pipelines(self) -> list[PipelineInfo]:
        """Every pipeline (stopped and failed ones too), oldest first."""
        return [p.info() for p in list(self._pipelines.values())]

    async def pause(self, pipeline_id: str, *, timeout_s: float = DEFAULT_PAUSE_TIMEOUT_S) -> PipelineInfo:
        """Stop starting handler calls in the pipeline's job (``PipelineStateError`` if it
        is paused already or not running). A restarted child is paused again."""
        pipeline = self._get(pipeline_id)
        await pipeline.pause(timeout_s)
        return pipeline.info()

    async def resume(self, pipeline_id: str) -> PipelineInfo:
        pipeline = self._get(pipeline_id)
        await pipeline.resume()
        return pipeline.info()

    async def send(self, pipeline_id: str, slot: str, item: Any, *, timeout_s: float | None = None) -> None:
        """Send ``item`` into ``slot`` of the pipeline's job, waiting while the slot is full
        or ``unacked_capacity`` sent items are not finished yet (up to ``timeout_s``; then
        ``PipelineStateError`` with state ``full``). ``InvalidCommand`` for an unknown slot
        or an item that cannot cross to the child (unpicklable, too large). Once it
        returns, the item is finished by the child or becomes one of the pipeline's
        ``dead_letters`` (its child ended first), never lost without a record."""
        await self._get(pipeline_id).send(slot, item, timeout_s)

    async def results(
        self, pipeline_id: str, *, max_items: int = 100, wait_s: float = 0.0, before: int | None = None
    ) -> list[Any]:
        """Consume up to ``max_items`` outputs, oldest first, waiting up to ``wait_s`` for
        the first one. Consuming makes room: a pipeline blocked on a full buffer goes on.

        ``before``: consume only the outputs at positions below it (nothing is waited
        for): a consumer that peeked (``peek_results``, ``results_offset``) and handled
        some consumes exactly those; asking again takes nothing more."""
        items = await self.results_of(pipeline_id, max_items=max_items, wait_s=wait_s, before=before)
        return [item for _, item in items]

    async def results_of(
        self, pipeline_id: str, *, max_items: int = 100, wait_s: float = 0.0, before: int | None = None
    ) -> list[tuple[str, Any]]:
        """As ``results``, each item with the output it came from (``(output, item)``)."""
        if max_items < 1:
            raise InvalidCommand("max_items must be at least 1")
        if before is not None and before < 0:
            raise InvalidCommand("before must be at least 0")
        return await self._get(pipeline_id).take_results(max_items, max(0.0, wait_s), before)

    def results_offset(self, pipeline_id: str) -> int:
        """The position of the oldest output waiting in the pipeline's results buffer:
        outputs are numbered from 0 (its first output ever, across restarts), so this is
        also how many were consumed. ``peek_results`` returns the outputs from here on."""
        return self._get(pipeline_id).results.offset

    def dead_letters(self, pipeline_id: str) -> list[PipelineDeadLetter]:
        """The pipeline's dead letters, oldest first (the newest ``dead_letters_capacity``;
        ``PipelineInfo.dead_letters`` counts them all): items sent that its child did not
        finish before it ended (``child_crashed``...), and its job's own dead letters."""
        return self._get(pipeline_id).dead_letters.list()

    async def wait_results(self, pipeline_id: str, *, wait_s: float) -> int:
        """Wait up to ``wait_s`` for an output without consuming it; how many are waiting."""
        results = self._get(pipeline_id).results
        await results.wait(max(0.0, wait_s))
        return len(results)

    def peek_results(self, pipeline_id: str, *, max_items: int = 100) -> list[tuple[str, Any]]:
        """Up to ``max_items`` outputs (``(output, item)``), oldest first, not consumed."""
        if max_items < 1:
            raise InvalidCommand("max_items must be at least 1")
        return self._get(pipeline_id).results.peek(max_items)

    def remaining(self, pipeline_id: str) -> int:
        """Outputs waiting in the pipeline's results buffer."""
        return len(self._get(pipeline_id).results)

    async def stop(self, pipeline_id: str, *, grace_s: float | None = None) -> PipelineInfo:
        """Drain the pipeline's job for up to ``grace_s``, then SIGTERM, then SIGKILL; it
        is ``stopped`` (and is not restarted)."""
        pipeline = self._get(pipeline_id)
        await pipeline.stop(self.settings.grace_s if grace_s is None else grace_s)
        return pipeline.info()

    async def wait_state(self, pipeline_id: str, state: str, timeout_s: float | None = None) -> PipelineInfo:
        """Wait until the pipeline is (or next becomes) ``state``; ``CommandTimeout`` if it
        does not within ``timeout_s``."""
        if state not in STATES:
            raise InvalidCommand(f"state must be one of {', '.join(STATES)}, not {state!r}")
        pipeline = self._get(pipeline_id)
        await pipeline.wait_state(state, timeout_s)
        return pipeline.info()

    async def wait_healthy(self, pipeline_id: str, timeout_s: float | None = None) -> PipelineInfo:
        """Wait for the pipeline's next health check that its child answers in time;
        ``CommandTimeout`` if none does within ``timeout_s``."""
        pipeline = self._get(pipeline_id)
        await pipeline.next_healthy_check(timeout_s)
        return pipeline.info()

    def child(self, pipeline_id: str) -> ChildProcess | None:
        """The pipeline's current child process (for tests and tools)."""
        return self._get(pipeline_id).child
