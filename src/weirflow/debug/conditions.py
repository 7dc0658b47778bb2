"""Breakpoint conditions in CEL — compiled once, evaluated on plain data only.

Python ``eval`` is never used. Items and state are converted to plain data
(``None``, bool, numbers, strings, bytes, lists, string-keyed maps) before a
condition sees them, so an expression cannot reach a Python object: attribute
access on a map is a key lookup, and there are no functions to call but CEL's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import cel

from ..errors import DebugError

MAX_DEPTH = 32
MAX_SOURCE_CHARS = 2000
MAX_OPERATORS = 200  # the CEL library recurses per operator: deep expressions overflow its stack
MAX_NESTING = 32
_OPERATOR = re.compile(r"&&|\|\||==|!=|<=|>=|[-+*/%<>!?]")
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_POSITION = re.compile(r"<input>:(\d+):(\d+)")


class ConditionError(DebugError):
    """A condition failed to compile (``line``/``column`` say where), or raised or gave a
    non-boolean when evaluated."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def to_plain(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain data; anything else becomes its ``repr`` string."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if _depth >= MAX_DEPTH:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v, _depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name), _depth + 1) for f in dataclasses.fields(value)}
    dump = getattr(type(value), "model_dump", None)  # pydantic models
    if callable(dump):
        return to_plain(dump(value), _depth + 1)
    return repr(value)


class Condition:
    """A compiled CEL expression. ``Condition("item.n > 3")`` raises ``ConditionError``
    (with line and column) for a syntax error."""

    def __init__(self, source: str) -> None:
        if not isinstance(source, str) or not source.strip():
            raise ConditionError("condition must be a non-empty CEL expression")
        _check_size(source)
        self.source = source
        try:
            self._program = cel.compile(source)
            self.variables: frozenset[str] = frozenset(self._program.variables())
        except Exception as e:  # noqa: BLE001 - the CEL binding raises ValueError and others
            text = str(e)
            m = _POSITION.search(text)
            if m is None:
                raise ConditionError(f"invalid condition {source!r}: {_describe(e)}") from None
            line, column = int(m.group(1)), int(m.group(2))
            detail = text[m.end() :].lstrip(": ").splitlines()[0]
            raise ConditionError(
                f"invalid condition {source!r} at line {line}, column {column}: {detail}", line, column
            ) from None

    def value(self, context: dict[str, Any]) -> Any:
        """Evaluate against ``context`` (already plain data)."""
        try:
            return self._program.execute(context)
        except Exception as e:  # noqa: BLE001 - any failure of the expression is reported
            raise ConditionError(f"condition {self.source!r} failed: {_describe(e)}") from None

    def test(self, context: dict[str, Any]) -> bool:
        result = self.value(context)
        if not isinstance(result, bool):
            raise ConditionError(
                f"condition {self.source!r} must give true or false, not {type(result).__name__}"
            )
        return result


def _check_size(source: str) -> None:
    """Refuse expressions big or deep enough to exhaust the evaluator's native stack."""
    if len(source) > MAX_SOURCE_CHARS:
        raise ConditionError(f"condition is {len(source)} characters long; at most {MAX_SOURCE_CHARS}")
    code = _STRING.sub('""', source)
    operators = len(_OPERATOR.findall(code))
    if operators > MAX_OPERATORS:
        raise ConditionError(f"condition has {operators} operators; at most {MAX_OPERATORS}")
    depth = deepest = 0
    for ch in code:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    if deepest > MAX_NESTING:
        raise ConditionError(f"condition nests {deepest} levels deep; at most {MAX_NESTING}")


def _describe(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, KeyError):
        text = f"no such key {text}"
    return text.splitlines()[0]
