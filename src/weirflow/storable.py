"""What a durable job can hold: JSON values that come back exactly as they went in.

One check serves every door a value comes through (``JobSpec``, the HTTP request
bodies, ``weirflow jobs submit`` and ``run --input``, and the durable journal's
encoder, which ``Job.send`` and ``ctx.emit`` reach). A value is storable when it
is ``None``, a ``bool``, an ``int`` in ``[-2**63, 2**64)`` (what the journal's
encoder, orjson, can write), a finite ``float``, a ``str`` without NUL characters
or unpaired surrogates (PostgreSQL refuses the first, no encoding holds the
second), a ``list``, or a ``dict`` with string keys, nested at most
``MAX_DEPTH`` levels, and when decoding its JSON gives a value equal to it (so a
tuple, which would come back as a list, a ``UUID`` or a ``datetime`` is not).

``encode`` returns the JSON bytes and raises ``UnstorableError`` naming where the
first problem is (``inputs["a.item"][0]``); ``problem`` says why without raising.
The fast path is orjson's encoder and decoder (both in C); the path of a problem
is looked for only once it is known there is one.

PostgreSQL keeps JSON numbers as ``numeric``, which forgets the exponent form of
a float: ``1e+16`` would come back as the integer ``10000000000000000``.
``pg_json`` writes such floats out in full (``10000000000000000.0``), so they
come back as floats.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

import orjson

from .errors import UnstorableError

INT_MIN = -(2**63)
INT_END = 2**64
#: orjson refuses to nest deeper than this
MAX_DEPTH = 253

# raise (rather than convert) on datetimes, dataclasses and subclasses of str, int, dict, list
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def text_problem(text: str) -> str | None:
    """Why no backend can store ``text``, or ``None``: PostgreSQL refuses NUL characters,
    and an unpaired surrogate is not Unicode any store can encode."""
    if "\x00" in text:
        return "strings must not contain NUL characters (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "strings must be valid Unicode (an unpaired surrogate is not)"
    return None


def _step(key: object) -> str:
    return f"[{key}]" if isinstance(key, int) else f"[{json.dumps(key)}]"


def _why(v: Any) -> str | None:
    """Why the value ``v`` itself (not what it holds) cannot be stored, or ``None``."""
    kind = type(v)
    if v is None or kind is bool:
        return None
    if kind is int:
        if INT_MIN <= v < INT_END:
            return None
        return f"integer {v} is out of range (durable jobs hold integers from -2**63 to 2**64-1)"
    if kind is float:
        return None if math.isfinite(v) else f"{v} is not a JSON number (NaN and infinities are not)"
    if kind is str:
        return text_problem(v)
    if kind is tuple:
        return "a tuple would come back as a list: pass a list"
    if kind is list or kind is dict:
        return None
    return f"a value of type {kind.__name__} is not JSON (use dict, list, str, int, float, bool or None)"


def problem(value: Any, *, max_depth: int = MAX_DEPTH) -> tuple[str, str] | None:
    """Where in ``value`` (a path such as ``[0]["k"]``, ``""`` for ``value`` itself) and why it
    cannot be stored, or ``None``. Written out in Python: called only to explain a refusal,
    and for small values (HTTP items) where it is as quick as encoding."""
    pending: list[tuple[Any, str, int]] = [(value, "", 0)]
    while pending:
        v, path, depth = pending.pop()
        why = _why(v)
        if why is not None:
            return path, why
        if isinstance(v, list | dict):
            if depth >= max_depth:
                return path, f"values must not nest more than {max_depth} levels deep"
            if isinstance(v, list):
                pending.extend((c, path + _step(i), depth + 1) for i, c in reversed(list(enumerate(v))))
                continue
            children = []
            for k, c in v.items():
                if type(k) is not str:
                    return path, f"keys must be strings, not {type(k).__name__} ({k!r})"
                key_problem = text_problem(k)
                if key_problem is not None:
                    return path + _step(k), f"key: {key_problem}"
                children.append((c, path + _step(k), depth + 1))
            pending.extend(reversed(children))
    return None


def encode(value: Any, what: str) -> bytes:
    """``value`` as JSON bytes, or ``UnstorableError`` naming where under ``what`` (the name
    of ``value`` in the message, such as ``inputs`` or ``item``) and why it cannot be stored."""
    try:
        text = orjson.dumps(value, option=_STRICT)
    except TypeError as e:
        raise _refusal(value, what, f"cannot be encoded ({e})") from None
    # NUL characters (written \u0000) and anything the decoder would not give back as it was
    # (NaN written as null, a tuple as a list); ``problem`` then tells which and where
    if b"\\u0000" in text or orjson.loads(text) != value:
        found = problem(value)
        if found is not None:  # (none: a backslash before "u0000" in a string, which is fine)
            raise _refusal(value, what, "")
    return text


def check(value: Any, what: str, *, max_depth: int = MAX_DEPTH) -> None:
    """``UnstorableError`` naming where under ``what`` and why ``value`` cannot be stored
    (or nests deeper than ``max_depth``)."""
    encode(value, what)
    if max_depth < MAX_DEPTH:
        found = problem(value, max_depth=max_depth)
        if found is not None:
            raise UnstorableError(what + found[0], found[1])


def _refusal(value: Any, what: str, fallback: str) -> UnstorableError:
    found = problem(value)
    path, why = found if found is not None else ("", fallback)
    return UnstorableError(what + path, why)


_EXPONENT = re.compile(rb'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?e\+\d+')


def _in_full(m: re.Match[bytes]) -> bytes:
    token = m.group()
    if token.startswith(b'"'):
        return token
    return format(Decimal(token.decode()), "f").encode() + b".0"


def pg_json(value: Any) -> str:
    """``value`` as JSON text for a PostgreSQL ``jsonb`` column: floats written in exponent
    form (``1e+16``) are written out in full, so that they come back as floats."""
    try:
        text = orjson.dumps(value, option=_STRICT)
    except orjson.JSONEncodeError:  # what orjson cannot write (an int past 64 bits stored before
        return json.dumps(value)  # the check existed) is still written, as the json module does
    if b"e+" in text:
        text = _EXPONENT.sub(_in_full, text)
    return text.decode()
