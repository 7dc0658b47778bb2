"""Flow files: YAML (or JSON) in the shape of ``Flow.to_dict()``.

Every error names the file, the key path (``routines.count.use``) and the problem,
and all problems of a file are reported together.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..errors import FlowError
from .functional import routine as make_routine
from .graph import Flow, slot_settings
from .routine import EXECUTORS, Routine, check_process_handlers

_TOP_KEYS = {"name", "routines", "slots", "connections", "outputs"}
_SLOT_KEYS = {"capacity", "overflow", "block_timeout_s"}
_ROUTINE_OPTIONS = {"concurrency", "on_error", "executor", "slots", "events"}  # class options, not settings


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, noting every mapping key given twice (PyYAML keeps the last one
    silently)."""

    duplicates: list[tuple[int, int, str]]  # line, column, message


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: PyYAML reports it itself
            continue
        if first is not None:
            mark = key_node.start_mark
            text = f"duplicate key {key!r} (first at line {first.start_mark.line + 1})"
            loader.duplicates.append((mark.line + 1, mark.column + 1, text))
        else:
            seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def import_object(ref: str, search_paths: list[str] | None = None) -> Any:
    """Import ``"package.module:attr.path"``; ``FlowError`` with the reason if it fails."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise FlowError(f"{ref!r} must look like 'package.module:Name'")
    mod_name, attr_path = ref.split(":")
    if not mod_name or not attr_path:
        raise FlowError(f"{ref!r} must look like 'package.module:Name'")
    try:
        module = _import_module(mod_name, search_paths or [])
    except FlowError:
        raise
    except Exception as e:  # an import runs arbitrary code; report what it raised
        raise FlowError(f"importing module {mod_name!r} failed: {type(e).__name__}: {e}") from e
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FlowError(f"module {mod_name!r} has no attribute {attr_path!r}") from None
    return obj


def _import_module(name: str, search_paths: list[str]) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        top = name.split(".")[0]
        if e.name is None or not (e.name == top or name.startswith(e.name)):
            raise FlowError(f"importing module {name!r} failed: {e}") from e
        added = [p for p in search_paths if p not in sys.path]
        if not added:
            raise FlowError(f"cannot import module {name!r}: {e}") from None
        sys.path.extend(added)
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as e2:
            raise FlowError(f"cannot import module {name!r}: {e2}") from None


def resolve_use(use: str, search_paths: list[str]) -> Any:
    """Import a ``use:`` reference and check it names a routine class, routine or function."""
    obj = import_object(use, search_paths)
    if isinstance(obj, Routine) or inspect.isfunction(obj):
        return obj
    if isinstance(obj, type) and issubclass(obj, Routine):
        return obj
    raise FlowError(f"{use} is not a wf.Routine class, routine or function ({type(obj).__name__})")


def settings_problems(cls: type[Routine], config: dict[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with ``with:`` ``config`` for routine class ``cls``, as (setting, message)
    pairs (setting ``""`` for one about the whole mapping). A class with an ``__init__`` of its
    own takes its parameters (anything, with ``**kwargs``); one with the base ``__init__``
    takes the settings it declares as class attributes (``min_len = 1``, ``delay_s: float``)."""
    init = cls.__init__
    if init is not Routine.__init__:
        params = list(inspect.signature(init).parameters.values())[1:]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return []
        named = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        known = list(named)
        required = [n for n, p in named.items() if p.default is inspect.Parameter.empty]
    else:
        known = _declared_settings(cls)
        required = []
    takes = (
        f"{cls.__qualname__} takes {', '.join(known)}" if known else f"{cls.__qualname__} takes no settings"
    )
    problems = [(str(k), f"unknown setting ({takes})") for k in config if k not in known]
    missing = [n for n in required if n not in config]
    if missing:
        problems.append(("", f"missing required setting(s) {', '.join(missing)} ({takes})"))
    return problems


def _machinery() -> frozenset[str]:
    """What ``Routine.__init_subclass__`` sets on every subclass (not settings)."""
    probe = type("_Probe", (Routine,), {"__module__": __name__})
    return frozenset(vars(probe)) | _ROUTINE_OPTIONS


def _declared_settings(cls: type[Routine]) -> list[str]:
    machinery = _machinery()
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        if klass in (Routine, object) or not issubclass(klass, Routine):
            continue
        for name in [*getattr(klass, "__annotations__", {}), *vars(klass)]:
            value = vars(klass).get(name)
            if (
                name.startswith("_")
                or name in names
                or name in cls.slots
                or name in cls.events
                or name in machinery
                or callable(value)
                or isinstance(value, classmethod | staticmethod | property)
            ):
                continue
            names.append(name)
    return names


def build_routine(obj: Any, use: str, config: dict[str, Any]) -> Routine:
    """Build the routine a resolved ``use:`` names, with its ``with:`` configuration."""
    if isinstance(obj, type):
        try:
            routine: Routine = obj(**config)
        except FlowError:
            raise
        except TypeError as e:
            raise FlowError(f"cannot build {use} with {config!r}: {e}") from None
        return routine
    if config:
        raise FlowError(
            f"{use} is a {'routine' if isinstance(obj, Routine) else 'function'}; it takes no settings"
        )
    if isinstance(obj, Routine):
        return obj
    fn: Callable[..., Any] = obj
    return make_routine(fn)


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{self.source}: {key}: {message}" if key else f"{self.source}: {message}")

    def raise_if_any(self) -> None:
        if len(self.items) == 1:
            raise FlowError(self.items[0], self.items)
        if self.items:
            raise FlowError(f"{len(self.items)} problems:\n  - " + "\n  - ".join(self.items), self.items)


def _parse_connection(value: Any) -> tuple[str, str]:
    if isinstance(value, str) and value.count("->") == 1:
        a, b = (part.strip() for part in value.split("->"))
        return a, b
    if isinstance(value, dict) and set(value) == {"from", "to"}:
        return str(value["from"]), str(value["to"])
    raise FlowError("must be 'routine.event -> routine.slot' or {from: ..., to: ...}")


def flow_from_dict(data: Any, source: str, search_paths: list[str] | None = None) -> Flow:
    p = _Problems(source)
    paths = [*list(search_paths or []), os.getcwd()]
    if not isinstance(data, dict):
        p.add("", f"must be a mapping with keys {sorted(_TOP_KEYS)}, not {type(data).__name__}")
        p.raise_if_any()
    for key in data:
        if key not in _TOP_KEYS:
            p.add(str(key), f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        p.add("name", "required, a non-empty string")
        name = "<unnamed>"
    flow = Flow(name)
    broken: set[str] = set()  # routines that failed to load: entries naming them are not re-reported
    routines = data.get("routines")
    if not isinstance(routines, dict) or not routines:
        p.add("routines", "required, a mapping of name -> {use: 'module:Class', with: {...}}")
        routines = {}
    for rname, entry in routines.items():
        key = f"routines.{rname}"
        broken.add(str(rname))
        if not isinstance(entry, dict):
            p.add(key, "must be a mapping with 'use' (and optional 'with')")
            continue
        for k in entry:
            if k not in ("use", "with", "executor"):
                p.add(f"{key}.{k}", "unknown key (expected 'use', 'with' or 'executor')")
        executor = entry.get("executor")
        if executor is not None and executor not in EXECUTORS:
            p.add(f"{key}.executor", f"must be 'thread' or 'process', not {executor!r}")
            continue
        use = entry.get("use")
        if not isinstance(use, str):
            p.add(f"{key}.use", "required, a string 'package.module:Name'")
            continue
        config = entry.get("with") or {}
        if not isinstance(config, dict):
            p.add(f"{key}.with", "must be a mapping of keyword arguments")
            continue
        try:
            obj = resolve_use(use, paths)
        except FlowError as e:
            p.add(f"{key}.use", str(e))
            continue
        if isinstance(obj, type):
            wrong = settings_problems(obj, config)
            for setting, message in wrong:
                p.add(f"{key}.with.{setting}" if setting else f"{key}.with", message)
            if wrong:
                continue
        try:
            built = build_routine(obj, use, config)
            if executor is not None and executor != built.executor:
                built = copy.copy(built)  # a routine object named by ``use`` may be shared
                built.executor = executor
                if executor == "process":
                    check_process_handlers(type(built))
            flow.add(str(rname), built)
        except FlowError as e:
            p.add(f"{key}.with" if config else key, str(e))
            continue
        broken.discard(str(rname))
    slots = data.get("slots") or {}
    if not isinstance(slots, dict):
        p.add("slots", "must be a mapping of 'routine.slot' -> {capacity, overflow, block_timeout_s}")
        slots = {}
    for path, spec in slots.items():
        key = f"slots.{path}"
        if not isinstance(spec, dict):
            p.add(key, "must be a mapping with capacity, overflow or block_timeout_s")
            continue
        bad = [k for k in spec if k not in _SLOT_KEYS]
        for k in bad:
            p.add(f"{key}.{k}", f"unknown key (expected one of {', '.join(sorted(_SLOT_KEYS))})")
        if str(path).split(".")[0] in broken:  # its values are still checked, on their own
            for setting, value in spec.items():
                if setting in _SLOT_KEYS:
                    try:
                        slot_settings(str(path), **{setting: value})
                    except FlowError as e:
                        p.add(key, str(e))
            continue
        if bad or str(path).split(".")[0] not in flow.routines:
            if not bad:
                p.add(key, f"no routine {str(path).split('.')[0]!r} in this flow")
            continue
        for setting, value in spec.items():  # one at a time: every bad value is reported
            try:
                flow.slot(str(path), **{setting: value})
            except (FlowError, TypeError) as e:
                p.add(key, str(e))
    conns = data.get("connections") or []
    if not isinstance(conns, list):
        p.add("connections", "must be a list of 'routine.event -> routine.slot'")
        conns = []
    first_at: dict[tuple[str, str], int] = {}  # each connection given: where it was first
    for i, value in enumerate(conns):
        key = f"connections[{i}]"
        try:
            a, b = _parse_connection(value)
            if (a, b) in first_at:  # (between routines that failed to load too)
                raise FlowError(f"given twice (first at connections[{first_at[a, b]}])")
            first_at[a, b] = i
            if a.split(".")[0] in broken or b.split(".")[0] in broken:
                # the end whose routine loaded is still checked, on its own
                if a.split(".")[0] not in broken:
                    flow.check_event(a)
                if b.split(".")[0] not in broken:
                    flow.check_slot(b)
                continue
            flow.connect(a, b)
        except FlowError as e:
            p.add(key, f"{value!r}: {e}" if isinstance(value, str) else str(e))
    outputs = data.get("outputs") or []
    if not isinstance(outputs, list):
        p.add("outputs", "must be a list of 'routine.event'")
        outputs = []
    listed: dict[str, int] = {}
    for i, out in enumerate(outputs):
        if str(out) in listed:
            p.add(f"outputs[{i}]", f"{str(out)!r} is given twice (first at outputs[{listed[str(out)]}])")
            continue
        listed[str(out)] = i
        if str(out).split(".")[0] in broken:
            continue
        try:
            flow.output(str(out))
        except FlowError as e:
            p.add(f"outputs[{i}]", str(e))
    p.raise_if_any()
    try:
        flow.validate()
    except FlowError as e:
        for problem in e.problems:
            p.add("", problem)
    p.raise_if_any()
    return flow


def load_flow_file(path: str | Path) -> Flow:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FlowError(f"{path}: cannot read flow file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise FlowError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise FlowError(f"{path}: {where}invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    if loader.duplicates:
        problems = [f"{path}: line {ln}, column {col}: {d}" for ln, col, d in sorted(loader.duplicates)]
        if len(problems) == 1:
            raise FlowError(problems[0], problems)
        raise FlowError(f"{len(problems)} problems:\n  - " + "\n  - ".join(problems), problems)
    # ``use: package.module:Name`` resolves against the file's folder and its parent
    # (a flow file inside the package it names), then the working directory
    folder = path.resolve().parent
    return flow_from_dict(data, str(path), [str(folder), str(folder.parent)])
