"""``--input routine.slot=VALUE``: turn command-line values into job inputs.

``VALUE`` is either ``@path`` (one string item per non-empty line of the file) or
a JSON value (one item). Repeating ``--input`` for a slot appends, in order. A
value a durable job could not hold exactly (NaN, an integer past 64 bits, a NUL
character: ``weirflow.storable``) is refused, for ``run`` as for ``jobs submit``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import storable
from ..errors import UnstorableError
from ..flow.graph import Flow


class InputError(Exception):
    """An ``--input`` option cannot be used; the message names the option and says why."""


def read_lines(path: str) -> list[str]:
    """The non-empty lines of ``path`` without their line endings."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return [line for line in text.splitlines() if line.strip()]


def parse_value(slot: str, value: str, *, index: int = 0) -> list[Any]:
    """The items one ``VALUE`` stands for: the file's lines for ``@path``, else one JSON item
    (``index`` is its place among the slot's items, for the message when it is refused)."""
    if value.startswith("@"):
        if not value[1:].strip():
            raise InputError(f"@ needs a file name: --input {slot}=@lines.txt (one item per line)")
        if Path(value[1:]).is_dir():
            raise InputError(f"{value[1:]} is a directory; @ takes a file (one item per line)")
        items: list[Any] = list(read_lines(value[1:]))
    else:
        try:
            items = [json.loads(value)]
        except json.JSONDecodeError as e:
            raise InputError(
                f"value {value!r} is not valid JSON ({e.msg}); "
                f"""to pass a string, quote it: --input '{slot}="{value}"'"""
            ) from None
    for n, item in enumerate(items):
        try:
            storable.check(item, f"inputs[{json.dumps(slot)}][{index + n}]")
        except UnstorableError as e:
            raise InputError(str(e)) from None
    return items


def parse_inputs(options: Iterable[str], flow: Flow) -> dict[str, list[Any]]:
    """Map every ``routine.slot=VALUE`` option to the items it gives, checking the slot exists."""
    slots = list(flow.slot_paths())
    inputs: dict[str, list[Any]] = {}
    for option in options:
        slot, sep, value = option.partition("=")
        slot = slot.strip()
        try:
            if not sep:
                raise InputError("expected routine.slot=VALUE (VALUE is JSON, or @file for its lines)")
            if slot not in slots:
                raise InputError(f"flow {flow.name!r} has no slot {slot!r} (slots: {', '.join(slots)})")
            items = parse_value(slot, value, index=len(inputs.get(slot, [])))
        except InputError as e:
            raise InputError(f"--input {option!r}: {e}") from None
        inputs.setdefault(slot, []).extend(items)
    return inputs
