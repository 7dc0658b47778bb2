"""Items are arbitrary Python objects; the API speaks JSON. ``jsonable`` bridges the two.

JSON values pass through unchanged (tuples become lists). Anything else — a set,
bytes, a dataclass, ``NaN`` — is rendered as ``{"$repr": repr(value), "$type":
"module.Class"}`` so a response never fails (and never silently loses the
value) because of one odd item.
"""

from __future__ import annotations

import math
from typing import Any

REPR_MARKER = "$repr"
TYPE_MARKER = "$type"
MAX_DEPTH = 64
MAX_REPR_CHARS = 2000

_KEY_TYPES = (str, int, float, bool)


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def opaque(value: Any) -> dict[str, str]:
    """The fallback rendering of a value that is not JSON."""
    try:
        text = repr(value)
    except Exception as e:  # noqa: BLE001 - a user's __repr__ may raise anything
        text = f"<repr failed: {type(e).__name__}>"
    if len(text) > MAX_REPR_CHARS:
        text = text[:MAX_REPR_CHARS] + "…"
    return {REPR_MARKER: text, TYPE_MARKER: _type_name(value)}


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as JSON-serialisable data, with ``opaque`` for what JSON cannot hold."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else opaque(value)
    if _depth >= MAX_DEPTH:
        return opaque(value)
    if isinstance(value, list | tuple):
        return [jsonable(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, _KEY_TYPES) or k is None for k in value):
            return opaque(value)
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = k if isinstance(k, str) else jsonable_key(k)
            out[key] = jsonable(v, _depth + 1)
        return out
    return opaque(value)


def jsonable_key(key: Any) -> str:
    """A non-string dict key as ``json.dumps`` would write it."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)
