"""A hook that raises never hangs a job and never loses an item.

At every hook point: a hook raising on every call leaves the job's outcome exactly
as without it (logged, counted), and a ``fatal`` one fails the job with an error
naming it; either way ``wait()`` returns and every input is processed or
dead-lettered.
"""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

import weirflow as wf
from tests.conftest import assert_settled
from tests.runtime.flows import Collect
from weirflow.metrics import EngineMetrics

N = 50
POINTS = (
    "on_emit",
    "on_route",
    "on_enqueue",
    "on_handler_start",
    "on_handler_end",
    "on_job_status",
    "on_job_result",
    "on_dead_letter",
    "on_queue_state",
)


class Pick(wf.Routine):
    """Forwards every item; raises on multiples of 5, which its policy dead-letters."""

    inp = wf.Slot(capacity=4)
    out = wf.Event()
    on_error = wf.ErrorPolicy(then="dead_letter")

    @inp.handler
    async def pick(self, item: int, ctx: wf.Context) -> None:
        if item % 5 == 0:
            raise ValueError(f"no {item}")
        await ctx.emit(self.out, item)


def _flow() -> wf.Flow:
    flow = wf.Flow("hook-failures")
    flow.add("a", Pick())
    flow.add("b", Collect())
    flow.connect("a.out", "b.inp")
    flow.slot("b.inp", capacity=3)  # small: fill states change (on_queue_state)
    flow.output("b.seen")
    return flow


def _raising(point: str, *, fatal: bool) -> wf.Hooks:
    """A hook whose ``point`` raises on every call."""

    async def item_hook(self: wf.Hooks, p: wf.HookPoint) -> None:
        self.calls += 1  # type: ignore[attr-defined]
        raise RuntimeError(f"broken {point}")

    def notify_hook(self: wf.Hooks, *args: Any) -> None:
        self.calls += 1  # type: ignore[attr-defined]
        raise RuntimeError(f"broken {point}")

    method = item_hook if point in ("on_emit", "on_route", "on_enqueue", "on_handler_start") else notify_hook
    cls = type(f"Broken_{point}", (wf.Hooks,), {point: method, "fatal": fatal, "calls": 0})
    return cls()  # type: ignore[no-any-return]


async def _run(hooks: list[wf.Hooks]) -> tuple[wf.JobResult, wf.Engine]:
    metrics = EngineMetrics()
    async with wf.Engine(hooks=hooks) as engine:
        metrics.watch(engine)
        job = await engine.start(_flow(), {"a.inp": list(range(N))})
        result = await job.wait(timeout_s=20)
        scrape = metrics.render().decode()
    engine.scrape = scrape  # type: ignore[attr-defined]
    return result, engine


def _letters(result: wf.JobResult) -> list[tuple[str, Any, str]]:
    return [(d.slot, d.item, d.reason) for d in result.dead_letters]


def _every_input_accounted(result: wf.JobResult) -> None:
    assert_settled(result)
    stats = result.stats
    assert stats.balanced()
    assert stats.accepted == N
    assert stats.accepted == stats.processed_at_entry + stats.dead_lettered_at_entry


@pytest.mark.parametrize("point", POINTS)
async def test_a_raising_hook_changes_nothing_but_is_logged_and_counted(point: str) -> None:
    reference, _ = await _run([])
    hook = _raising(point, fatal=False)
    with capture_logs() as logs:
        result, engine = await _run([hook])
    assert hook.calls > 0  # type: ignore[attr-defined]
    assert result.status is wf.JobStatus.COMPLETED, result.error
    assert result.outputs == reference.outputs
    assert _letters(result) == _letters(reference)
    _every_input_accounted(result)
    for path, s in result.stats.slots.items():
        r = reference.stats.slots[path]
        assert (s.enqueued, s.processed, s.dead_lettered) == (r.enqueued, r.processed, r.dead_lettered)
    name = type(hook).__qualname__
    assert engine.hook_errors == {(name, point): hook.calls}  # type: ignore[attr-defined]
    failed = [e for e in logs if e["event"] == "hook_failed"]
    assert len(failed) == hook.calls  # type: ignore[attr-defined]
    assert {(e["hook"], e["point"]) for e in failed} == {(name, point)}
    scraped = engine.scrape  # type: ignore[attr-defined]
    assert f'weirflow_hook_errors_total{{hook="{name}",point="{point}"}} {float(hook.calls)}' in scraped  # type: ignore[attr-defined]


@pytest.mark.parametrize("point", POINTS)
async def test_a_fatal_raising_hook_fails_the_job_naming_it(point: str) -> None:
    hook = _raising(point, fatal=True)
    with capture_logs():
        result, engine = await _run([hook])
    assert result.status is wf.JobStatus.FAILED
    name = type(hook).__qualname__
    assert result.error is not None
    assert result.error.startswith(f"hook {name}.{point} raised RuntimeError: broken {point}")
    _every_input_accounted(result)
    assert engine.hook_errors[(name, point)] >= 1


async def test_on_job_status_raising_at_completion_does_not_hang_wait() -> None:
    """Seen before: the status said completed, ``wait()`` never returned."""

    class AtEnd(wf.Hooks):
        def on_job_status(self, job: wf.Job, status: wf.JobStatus, reason: str | None) -> None:
            if status is wf.JobStatus.COMPLETED:
                raise RuntimeError("status hook broke")

    with capture_logs():
        result, _ = await _run([AtEnd()])
    assert result.status is wf.JobStatus.COMPLETED
    _every_input_accounted(result)


async def test_on_handler_end_raising_leaves_nothing_in_flight() -> None:
    """Seen before: ``in_flight=1`` on a finished job."""

    class End(wf.Hooks):
        def on_handler_end(self, *args: Any) -> None:
            raise RuntimeError("end hook broke")

    with capture_logs():
        result, _ = await _run([End()])
    assert result.status is wf.JobStatus.COMPLETED
    assert result.stats.slots["a.inp"].in_flight == 0
    assert result.stats.slots["a.inp"].processed == N - N // 5
    _every_input_accounted(result)


async def test_on_dead_letter_raising_loses_no_input() -> None:
    """Seen before: 48 of 50 inputs vanished."""

    class Letters(wf.Hooks):
        def on_dead_letter(self, job: wf.Job, letter: wf.DeadLetter) -> None:
            raise RuntimeError("dead-letter hook broke")

    with capture_logs():
        result, _ = await _run([Letters()])
    assert result.status is wf.JobStatus.COMPLETED
    assert sorted(d.item for d in result.dead_letters) == list(range(0, N, 5))
    (seen,) = result.outputs["b.seen"]
    assert sorted(seen) == [i for i in range(N) if i % 5]
    _every_input_accounted(result)


async def test_a_hook_that_does_not_raise_is_not_counted() -> None:
    class Quiet(wf.Hooks):
        def on_dead_letter(self, job: wf.Job, letter: wf.DeadLetter) -> None:
            pass

    result, engine = await _run([Quiet()])
    assert result.status is wf.JobStatus.COMPLETED
    assert engine.hook_errors == {}
