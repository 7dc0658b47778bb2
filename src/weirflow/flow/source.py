"""``--flows DIR_OR_MODULE``: the flows a server, a worker or ``weirflow jobs`` loads.

A directory gives every ``*.yaml`` / ``*.yml`` file in it (sorted by name); a
single flow file gives that flow; anything else is imported as a module and
every ``wf.Flow`` at its top level is taken. The current directory is tried as
an import root when the module is not found otherwise.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from ..errors import FlowError
from .graph import Flow

FLOW_FILE_SUFFIXES = (".yaml", ".yml")


def load_flows(source: str) -> list[Flow]:
    """Load the flows ``source`` names; ``FlowError`` naming the source if none or a bad one."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in FLOW_FILE_SUFFIXES and p.is_file())
        flows = [Flow.load(p) for p in files]
        where = f"directory {source}"
    elif path.is_file():
        flows = [Flow.load(path)]
        where = f"file {source}"
    else:
        flows = _module_flows(source)
        where = f"module {source}"
    if not flows:
        raise FlowError(f"no flows found in {where}")
    check_unique(flows)
    return flows


def check_unique(flows: list[Flow]) -> None:
    seen: set[str] = set()
    for flow in flows:
        if flow.name in seen:
            raise FlowError(f"two flows are named {flow.name!r}")
        seen.add(flow.name)


def _module_flows(name: str) -> list[Flow]:
    if not name.replace(".", "").replace("_", "").isalnum():
        raise FlowError(f"--flows {name!r} is neither a directory, a flow file nor a module name")
    module = _import(name)
    flows: list[Flow] = []
    for value in vars(module).values():
        if isinstance(value, Flow) and all(value is not f for f in flows):
            flows.append(value)
    return flows


def _import(name: str) -> object:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        cwd = os.getcwd()
        if e.name is None or not name.startswith(e.name) or cwd in sys.path:
            raise FlowError(f"cannot import flows module {name!r}: {e}") from None
        sys.path.append(cwd)
        return _import(name)
    except FlowError:
        raise
    except Exception as e:  # importing runs arbitrary code; report what it raised
        raise FlowError(f"importing flows module {name!r} failed: {type(e).__name__}: {e}") from e
