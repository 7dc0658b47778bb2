"""Breakpoint conditions in CEL — compiled once, evaluated on plain data only.

Python ``eval`` is never used. Items and state are converted to plain data
(``None``, bool, numbers, strings, bytes, lists, string-keyed maps) before a
condition sees them, so an expression cannot reach a Python object: attribute
access on a map is a key lookup, and there are no functions to call but CEL's.

Cost is bounded, because an evaluation runs on the event loop and the CEL
library holds the GIL for the whole of it (measured: a 2,000-item ``map`` held it
for 0.44 s with no other thread getting a turn):

- at compile time, a comprehension macro (``map``, ``filter``, ``all``,
  ``exists``, ``exists_one``) nested inside another is refused, and so are more
  than ``MAX_MACROS`` of them;
- at evaluation, the data a condition sees is at most ``MAX_VALUES`` values, and
  an estimate of the evaluation's cost from the size of that data and the
  macros used must stay under ``MAX_COST_MS``; otherwise ``ConditionError``
  (a breakpoint whose condition errs pauses rather than going on silently).

The estimate is written here because the CEL binding has no cost limit of its
own. Its constants are measured on the binding (version 0.10): ``map`` and
``filter`` copy their accumulator at each element, so they cost about
``0.1 µs * elements * values``; the other macros and the conversion of the data
cost about a microsecond per value.
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
MAX_MACROS = 8
MAX_VALUES = 3000  # values (scalars and containers) in the data one evaluation sees
MAX_COST_MS = 10.0  # estimated evaluation time allowed on the event loop
_CONVERT_MS_PER_VALUE = 3e-3  # to_plain plus the binding's conversion (measured ~1.7e-3)
_SCAN_MS_PER_VALUE = 5e-4  # all / exists / exists_one, per value of their range (measured ~2.5e-4)
_COPY_MS_PER_VALUE = 1.5e-4  # map / filter, per element x value copied (measured ~5e-5)
_CHAR_MS = 1e-6  # copying strings and bytes, per character, per operator touching them
_MACRO = re.compile(r"\.\s*(map|filter|all|exists_one|exists)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUADRATIC = frozenset({"map", "filter"})
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


def to_plain(value: Any, *, max_values: int = MAX_VALUES) -> Any:
    """``value`` as plain data; anything else becomes its ``repr`` string.

    ``ConditionError`` when it holds more than ``max_values`` values: converting
    it (and evaluating anything on it) would hold up the event loop."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    budget = [max_values]
    return _plain(value, 0, budget)


def _plain(value: Any, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ConditionError(
            f"the data is too large for a condition (more than {MAX_VALUES} values); "
            "test a smaller part of it, or break on the routine without a condition"
        )
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if depth >= MAX_DEPTH:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1, budget) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), depth + 1, budget) for f in dataclasses.fields(value)}
    dump = getattr(type(value), "model_dump", None)  # pydantic models
    if callable(dump):
        budget[0] += 1  # the model and its dump are one value
        return _plain(dump(value), depth + 1, budget)
    return repr(value)


@dataclasses.dataclass(frozen=True, slots=True)
class _Macro:
    name: str
    reaches_out: bool  # its body names a variable other than its own: each step may copy everything


@dataclasses.dataclass(slots=True)
class _Size:
    values: int = 0
    longest: int = 0  # the longest list or map: the most steps a macro can take
    chars: int = 0
    nested: int = 0  # values inside lists and maps: what ``+`` can copy over and over


def _measure(context: dict[str, Any]) -> _Size:
    """The size of the variables' values (the context mapping itself is not data)."""
    size = _Size()
    stack = list(context.values())
    while stack:
        v = stack.pop()
        size.values += 1
        if isinstance(v, str | bytes):
            size.chars += len(v)
        elif isinstance(v, dict):
            size.longest = max(size.longest, len(v))
            size.values += len(v)  # the keys
            size.nested += 2 * len(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            size.longest = max(size.longest, len(v))
            size.nested += len(v)
            stack.extend(v)
    return size


class Condition:
    """A compiled CEL expression. ``Condition("item.n > 3")`` raises ``ConditionError``
    (with line and column) for a syntax error."""

    def __init__(self, source: str) -> None:
        if not isinstance(source, str) or not source.strip():
            raise ConditionError("condition must be a non-empty CEL expression")
        code = _check_size(source)
        self._macros = _macros(code)
        self._operators = len(_OPERATOR.findall(code))
        self._literal_items = code.count(",") + 1  # an upper bound on a list literal's length
        # ``+`` concatenates lists: a range built as ``item + item + ...`` is that many times longer
        self._concatenations = code.count("+")
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

    def cost_ms(self, context: dict[str, Any]) -> float:
        """An upper estimate of the time an evaluation against ``context`` takes."""
        size = _measure(context)
        grow = 1 + self._concatenations if size.nested else 1  # ``+`` of numbers grows nothing
        steps = max(size.longest, self._literal_items) * grow
        values = size.values + size.nested * (grow - 1)
        cost = size.values * _CONVERT_MS_PER_VALUE + size.chars * _CHAR_MS * (1 + self._operators)
        # ``a + b + c ...`` copies what it has joined so far at each ``+``: the longest list, k^2 / 2 times
        cost += size.longest * (grow - 1) ** 2 / 2 * _COPY_MS_PER_VALUE
        for m in self._macros:
            per_step = values if m.reaches_out else max(1.0, values / max(steps, 1))
            if m.name in _QUADRATIC:
                cost += steps * steps * per_step * _COPY_MS_PER_VALUE
            else:
                cost += steps * per_step * _SCAN_MS_PER_VALUE
        return cost

    def value(self, context: dict[str, Any]) -> Any:
        """Evaluate against ``context`` (already plain data); ``ConditionError`` if it would
        cost more than ``MAX_COST_MS``."""
        cost = 0.0 if not self._macros and _scalars(context) else self.cost_ms(context)
        if cost > MAX_COST_MS:
            raise ConditionError(
                f"condition {self.source!r} is too costly on this data (about {cost:.0f} ms, "
                f"at most {MAX_COST_MS:.0f} ms): {_advice(self._macros)}"
            )
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


def _scalars(context: dict[str, Any]) -> bool:
    """Nothing in ``context`` can make an evaluation without macros costly."""
    for v in context.values():
        if isinstance(v, dict | list) or (isinstance(v, str | bytes) and len(v) > 4096):
            return False
    return True


def _macros(code: str) -> tuple[_Macro, ...]:
    """The comprehension macros of ``code`` (strings blanked); ``ConditionError`` for one
    nested in another (its cost would multiply) or for more than ``MAX_MACROS``."""
    found: list[_Macro] = []
    spans: list[tuple[int, int]] = []
    for m in _MACRO.finditer(code):
        start = m.end(1)  # the macro's opening parenthesis follows its name
        open_at = code.index("(", start)
        end = _closing(code, open_at)
        if any(a < open_at < b for a, b in spans):
            raise ConditionError(
                f"comprehension {m.group(1)}() nested inside another is not allowed in a condition: "
                "its cost grows with the product of the list sizes"
            )
        spans.append((open_at, end))
        body = code[m.end(2) : end]
        names = set(_IDENT.findall(body)) - {m.group(2), "true", "false", "null", "in", "size"}
        found.append(_Macro(m.group(1), bool(names & {"item", "state", "queue"})))
    if len(found) > MAX_MACROS:
        raise ConditionError(f"condition uses {len(found)} comprehension macros; at most {MAX_MACROS}")
    return tuple(found)


def _closing(code: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(code)):
        if code[i] == "(":
            depth += 1
        elif code[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(code)


def _advice(macros: tuple[_Macro, ...]) -> str:
    if any(m.name in _QUADRATIC for m in macros):
        return "map() and filter() grow with the square of the list; prefer exists(), all() or size()"
    return "test a smaller part of the item"


def _check_size(source: str) -> str:
    """Refuse expressions big or deep enough to exhaust the evaluator's native stack;
    the source with its string literals blanked."""
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
    return code


def _describe(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, KeyError):
        text = f"no such key {text}"
    return text.splitlines()[0]
