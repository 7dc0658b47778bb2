"""What ``weirflow run`` and ``weirflow demo`` print on stdout: the job's result as JSON.

The document is one JSON object on one line::

    {"status": "completed", "outputs": {"count.total": [3]}, "dead_letters": 0, "error": null}

``status`` is the job's final ``JobStatus`` value; ``outputs`` is ``result.outputs``
(every output event's items, in emit order); ``dead_letters`` is how many items were
dead-lettered; ``error`` is the failure text or ``null``. Items that are not JSON
values (a set, a dataclass, ...) are written as their ``repr()`` string.
"""

from __future__ import annotations

import json
from typing import Any

from ..runtime.results import JobResult, JobStatus


def report(result: JobResult, error: str | None = None) -> dict[str, Any]:
    """The printed document for ``result``; ``error`` overrides the job's (e.g. a timeout)."""
    return {
        "status": result.status.value,
        "outputs": result.outputs,
        "dead_letters": result.dead_letter_count,
        "error": error if error is not None else result.error,
    }


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, default=repr)


def exit_code(document: dict[str, Any]) -> int:
    """0 when the job completed, 1 when it failed, was cancelled or timed out."""
    return 0 if document["status"] == JobStatus.COMPLETED.value else 1
