"""Routine classes are checked when they are created."""

from __future__ import annotations

import pytest

import weirflow as wf


def test_slots_events_and_bindings_are_collected() -> None:
    class R(wf.Routine):
        a = wf.Slot(capacity=5, overflow="drop_oldest", block_timeout_s=1.5)
        b = wf.Slot()
        out = wf.Event()

        @a.handler
        async def on_a(self, item: int, ctx: wf.Context) -> None: ...

        @wf.batch(b, max_items=7, max_wait_s=0.5)
        def on_b(self, items: list[int]) -> None: ...

    assert set(R.slots) == {"a", "b"} and set(R.events) == {"out"}
    assert R.slots["a"].overflow is wf.Overflow.DROP_OLDEST
    acts = {a.method: a for a in R.activations}
    assert acts["on_a"].kind == "each" and acts["on_a"].is_async and acts["on_a"].wants_ctx
    assert acts["on_b"].kind == "batch" and not acts["on_b"].is_async and not acts["on_b"].wants_ctx
    assert (acts["on_b"].max_items, acts["on_b"].max_wait_s) == (7, 0.5)
    assert not R.has_on_end


def test_subclass_inherits_and_overrides() -> None:
    class Base(wf.Routine):
        inp = wf.Slot()

        @inp.handler
        def take(self, item: int, ctx: wf.Context) -> None: ...

        async def on_end(self, ctx: wf.Context) -> None: ...

    class Child(Base):
        extra = wf.Event()

    assert Child.slots == Base.slots and "extra" in Child.events
    assert Child.has_on_end and Child.on_end_is_async
    assert [a.method for a in Child.activations] == ["take"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, "capacity must be an integer >= 1"),
        ({"capacity": 2.5}, "capacity must be an integer >= 1"),
        ({"overflow": "spill"}, "unknown overflow policy 'spill'"),
        ({"block_timeout_s": -1}, "block_timeout_s must be >= 0"),
    ],
)
def test_bad_slot_settings_raise_flow_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(wf.FlowError, match=message):
        wf.Slot(**kwargs)  # type: ignore[arg-type]


def test_binding_errors_at_class_creation() -> None:
    other = wf.Slot()
    with pytest.raises(wf.FlowError, match="not an attribute"):

        class Foreign(wf.Routine):
            @other.handler
            def take(self, item: int, ctx: wf.Context) -> None: ...

    with pytest.raises(wf.FlowError, match="bound to both"):

        class Twice(wf.Routine):
            inp = wf.Slot()

            @inp.handler
            def one(self, item: int) -> None: ...

            @inp.handler
            def two(self, item: int) -> None: ...

    with pytest.raises(wf.FlowError, match=r"must take \(self, item, ctx\)"):

        class Arity(wf.Routine):
            inp = wf.Slot()

            @inp.handler
            def take(self) -> None: ...

    with pytest.raises(wf.FlowError, match="concurrency"):

        class Conc(wf.Routine):
            concurrency = 0

    with pytest.raises(wf.FlowError, match="join needs at least two slots"):
        wf.join(wf.Slot())
    with pytest.raises(wf.FlowError, match="max_items"):
        wf.batch(wf.Slot(), max_items=0)


def test_config_becomes_attributes_and_is_kept_for_flow_files() -> None:
    class Conf(wf.Routine):
        inp = wf.Slot()

        @inp.handler
        def take(self, item: int) -> None: ...

    r = Conf(min_len=2, label="x")
    assert r.min_len == 2 and r.label == "x"  # type: ignore[attr-defined]
    assert r.config() == {"min_len": 2, "label": "x"}
    with pytest.raises(wf.FlowError, match="cannot configure 'inp'"):
        Conf(inp=3)
    with pytest.raises(wf.FlowError, match="defined inside a function"):
        r.use_path()


def test_policies_validate() -> None:
    with pytest.raises(wf.FlowError):
        wf.ErrorPolicy(retries=-1)
    with pytest.raises(wf.FlowError):
        wf.ErrorPolicy(then="explode")  # type: ignore[arg-type]
    with pytest.raises(wf.FlowError):
        wf.Backoff(factor=0.5)
    b = wf.Backoff(initial_s=0.1, factor=2, max_s=0.3, jitter=False)
    assert [b.delay_s(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
    j = wf.Backoff(initial_s=1, factor=1, max_s=1, jitter=True)
    assert all(0.5 <= j.delay_s(1) <= 1 for _ in range(50))


def test_backoff_never_overflows() -> None:
    b = wf.Backoff(initial_s=1, factor=1e200, max_s=7, jitter=False)
    assert b.delay_s(5) == 7
