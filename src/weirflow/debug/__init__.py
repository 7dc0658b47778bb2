"""Debugging layer: breakpoints with CEL conditions and per-job debug sessions."""

from __future__ import annotations

from .breakpoints import Breakpoint
from .conditions import Condition, ConditionError, to_plain
from .registry import Debugger
from .session import DebugSession, Hit

__all__ = ["Breakpoint", "Condition", "ConditionError", "DebugSession", "Debugger", "Hit", "to_plain"]
