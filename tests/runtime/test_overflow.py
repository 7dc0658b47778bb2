"""Every overflow policy under sustained overload: 50,000 items into a slot of capacity 8."""

from __future__ import annotations

import weirflow as wf
from tests.conftest import assert_settled
from tests.runtime.flows import Burst, Collect, burst_flow

N = 50_000


async def test_block_delivers_everything_in_order_and_reports_backpressure() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(burst_flow(8, "block"), {"src.go": N})
        result = await job.wait(timeout_s=60)
    assert result.status is wf.JobStatus.COMPLETED
    assert result.outputs["dst.seen"] == [list(range(N))]
    assert result.dead_letters == []
    s = result.stats.slots["dst.inp"]
    assert s.enqueued == s.processed == N
    assert s.high_water == 8
    assert s.blocked_s > 0
    assert_settled(result)


async def test_fail_rejects_exactly_what_the_emitter_saw() -> None:
    async with wf.Engine() as engine:
        job = await engine.start(burst_flow(8, "fail", catch=True), {"src.go": N})
        result = await job.wait(timeout_s=60)
    assert result.status is wf.JobStatus.COMPLETED
    (seen,) = result.outputs["dst.seen"]
    rejected = result.outputs["src.rejected"]
    assert rejected, "the consumer is slower than the producer: some items must be rejected"
    assert seen == sorted(seen)
    assert set(seen).isdisjoint(rejected)
    assert sorted(seen + rejected) == list(range(N))
    s = result.stats.slots["dst.inp"]
    assert s.enqueued == len(seen) == N - len(rejected)
    assert s.dead_lettered == 0 and result.dead_letters == []
    assert_settled(result)


async def test_fail_uncaught_goes_through_the_emitters_error_policy() -> None:
    class Strict(Burst):
        on_error = wf.ErrorPolicy(then="dead_letter")

    flow = wf.Flow("strict")
    flow.add("src", Strict())
    flow.add("dst", Collect(slow=True))
    flow.connect("src.out", "dst.inp")
    flow.slot("dst.inp", capacity=8, overflow="fail")
    async with wf.Engine() as engine:
        job = await engine.start(flow, {"src.go": [N]})
        result = await job.wait(timeout_s=60)
    assert result.status is wf.JobStatus.COMPLETED
    (letter,) = result.dead_letters
    assert letter.slot == "src.go" and letter.item == N
    assert letter.reason == "handler_failed"
    assert letter.error is not None and "SlotFullError" in letter.error and "dst.inp" in letter.error
    assert_settled(result)


async def test_fail_uncaught_fails_the_job_by_default() -> None:
    flow = burst_flow(8, "fail")
    async with wf.Engine() as engine:
        job = await engine.start(flow, {"src.go": N})
        result = await job.wait(timeout_s=60)
    assert result.status is wf.JobStatus.FAILED
    assert result.error is not None and "slot 'dst.inp' is full" in result.error
    assert_settled(result)
    # whatever was queued when the job failed is recorded, not lost
    s = result.stats.slots["dst.inp"]
    assert s.dead_lettered == sum(1 for d in result.dead_letters if d.slot == "dst.inp")


async def _drop_run(policy: str) -> tuple[list[int], list[wf.DeadLetter], wf.JobResult]:
    async with wf.Engine(max_dead_letters=N) as engine:  # keep every letter (default: 10,000)
        job = await engine.start(burst_flow(8, policy), {"src.go": N})
        result = await job.wait(timeout_s=60)
    assert result.status is wf.JobStatus.COMPLETED
    (seen,) = result.outputs["dst.seen"]
    return seen, result.dead_letters, result


async def test_drop_oldest_dead_letters_every_drop_with_its_payload() -> None:
    seen, letters, result = await _drop_run("drop_oldest")
    dropped = [d.item for d in letters]
    assert dropped, "overload must drop"
    assert {d.reason for d in letters} == {"dropped_oldest"}
    assert {d.slot for d in letters} == {"dst.inp"}
    assert sorted(seen + dropped) == list(range(N))
    assert seen == sorted(seen)
    # drop_oldest keeps the newest: the last item always arrives
    assert seen[-1] == N - 1
    s = result.stats.slots["dst.inp"]
    assert s.enqueued == N and s.dead_lettered == len(dropped) and s.processed == len(seen)
    assert_settled(result)


async def test_drop_newest_dead_letters_every_drop_with_its_payload() -> None:
    seen, letters, result = await _drop_run("drop_newest")
    dropped = [d.item for d in letters]
    assert dropped
    assert {d.reason for d in letters} == {"dropped_newest"}
    assert sorted(seen + dropped) == list(range(N))
    # drop_newest keeps the oldest: the first capacity items always arrive
    assert seen[:8] == list(range(8))
    s = result.stats.slots["dst.inp"]
    assert s.enqueued == N and s.dead_lettered == len(dropped)
    assert_settled(result)


async def test_block_timeout_raises_slot_full_to_the_emitter() -> None:
    flow = burst_flow(2, "block")
    flow.slot("dst.inp", block_timeout_s=0.05)
    async with wf.Engine() as engine:
        job = await engine.start(flow, {"src.go": 5})
        job.pause_routine("dst")  # the consumer takes nothing: the third emit must time out
        result = await job.wait(timeout_s=30)
    assert result.status is wf.JobStatus.FAILED
    assert result.error is not None and "'dst.inp' stayed full" in result.error
    # the two queued items and the trigger are recorded, not lost
    assert sorted((d.slot, d.item) for d in result.dead_letters) == [
        ("dst.inp", 0),
        ("dst.inp", 1),
        ("src.go", 5),
    ]
    assert_settled(result)


async def test_fill_state_notifications_have_hysteresis() -> None:
    states: list[str] = []

    class Watch(wf.Hooks):
        def on_queue_state(self, job: wf.Job, slot: str, state: str) -> None:
            if slot == "dst.inp":
                states.append(state)

    async with wf.Engine(hooks=[Watch()]) as engine:
        job = await engine.start(burst_flow(100, "block"), {"src.go": 5000})
        result = await job.wait(timeout_s=60)
    assert result.outputs["dst.seen"] == [list(range(5000))]
    # the producer keeps the slot at capacity: each take/append pair must not report
    assert states[:2] == ["near_full", "full"]
    assert states[-1] == "ok"
    assert len(states) < 50, states
