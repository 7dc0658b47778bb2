"""Where ``load_flows`` was: it is part of the definition layer now (``weirflow.flow.source``)."""

from __future__ import annotations

from ..flow.source import FLOW_FILE_SUFFIXES, check_unique, load_flows

__all__ = ["FLOW_FILE_SUFFIXES", "check_unique", "load_flows"]
