"""Definition layer: routines, slots, events, policies and flows."""

from __future__ import annotations

from .functional import FunctionRoutine, routine
from .graph import Connection, Flow, SlotSpec
from .policy import Backoff, ErrorPolicy, Overflow
from .routine import Activation, Event, Routine, Slot, batch, join
from .source import load_flows

__all__ = [
    "Activation",
    "Backoff",
    "Connection",
    "ErrorPolicy",
    "Event",
    "Flow",
    "FunctionRoutine",
    "Overflow",
    "Routine",
    "Slot",
    "SlotSpec",
    "batch",
    "join",
    "load_flows",
    "routine",
]
