"""Building and validating flows."""

from __future__ import annotations

import pytest

import weirflow as wf
from tests.flow.examples_for_tests import Sink, Source


def test_connect_names_what_is_unknown() -> None:
    flow = wf.Flow("f").add("src", Source()).add("dst", Sink())
    with pytest.raises(wf.FlowError, match=r"no routine 'nope' \(routines: src, dst\)"):
        flow.connect("nope.out", "dst.inp")
    with pytest.raises(wf.FlowError, match=r"routine 'src' has no event 'oops' \(events: out\)"):
        flow.connect("src.oops", "dst.inp")
    with pytest.raises(wf.FlowError, match=r"routine 'dst' has no slot 'x' \(slots: inp\)"):
        flow.connect("src.out", "dst.x")
    with pytest.raises(wf.FlowError, match=r"must look like 'routine\.name'"):
        flow.connect("src", "dst.inp")
    flow.connect("src.out", "dst.inp")
    with pytest.raises(wf.FlowError, match="already"):
        flow.connect("src.out", "dst.inp")


def test_add_rejects_bad_names_and_classes() -> None:
    flow = wf.Flow("f")
    with pytest.raises(wf.FlowError, match="routine instance"):
        flow.add("a", Source)  # type: ignore[arg-type]
    with pytest.raises(wf.FlowError, match=r"without '\.'"):
        flow.add("a.b", Source())
    flow.add("a", Source())
    with pytest.raises(wf.FlowError, match="already has a routine named 'a'"):
        flow.add("a", Source())


def test_validate_lists_every_problem() -> None:
    class Unbound(wf.Routine):
        inp = wf.Slot()
        other = wf.Slot()

        @inp.handler
        def take(self, item: int) -> None: ...

    flow = wf.Flow("f").add("u", Unbound())
    with pytest.raises(wf.FlowError) as info:
        flow.validate()
    assert info.value.problems == ["slot u.other has no handler (bind one with @slot.handler, batch or join)"]
    with pytest.raises(wf.FlowError, match="no routines"):
        wf.Flow("empty").validate()


def test_slot_overrides_and_round_trip() -> None:
    flow = wf.Flow("f").add("src", Source()).add("dst", Sink(label="x"))
    flow.connect("src.out", "dst.inp").output("src.out")
    flow.slot("dst.inp", capacity=7, overflow="drop_newest")
    spec = flow.slot_spec("dst.inp")
    assert (spec.capacity, spec.overflow, spec.block_timeout_s) == (7, wf.Overflow.DROP_NEWEST, None)
    data = flow.to_dict()
    assert data == {
        "name": "f",
        "routines": {
            "src": {"use": "tests.flow.examples_for_tests:Source"},
            "dst": {"use": "tests.flow.examples_for_tests:Sink", "with": {"label": "x"}},
        },
        "slots": {"dst.inp": {"capacity": 7, "overflow": "drop_newest"}},
        "connections": ["src.out -> dst.inp"],
        "outputs": ["src.out"],
    }
    again = wf.Flow.from_dict(data)
    assert again.to_dict() == data
    described = again.describe()
    assert described["routines"]["dst"]["slots"]["inp"]["capacity"] == 7
    with pytest.raises(wf.FlowError, match="capacity"):
        flow.slot("dst.inp", capacity=0)
