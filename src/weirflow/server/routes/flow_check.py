"""``POST /api/flows/{name}/check``: would these inputs start a job? Starts nothing.

The web UI's "validate" button: the flow's own checks (``Flow.validate``) and the
inputs' slot names, answered as a list of problems rather than a first error.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ...errors import FlowError
from ..auth import require_admin
from ..deps import Service, errors
from ..models import RequestBody

router = APIRouter(prefix="/api/flows", tags=["flows"], dependencies=[Depends(require_admin)])


class CheckInputs(RequestBody):
    inputs: dict[str, list[Any]] = Field(default_factory=dict, description='{"routine.slot": [items]}')


class CheckResult(BaseModel):
    valid: bool
    problems: list[str]
    inputs: dict[str, int] = Field(description="Items per input slot that would be sent.")


@router.post("/{name}/check", response_model=CheckResult, responses=errors(404))
async def check_flow(name: str, body: CheckInputs, service: Service) -> dict[str, Any]:
    """The flow's problems and those of ``inputs`` (unknown slots); ``valid`` if none."""
    flow = service.flow(name)
    problems: list[str] = []
    try:
        flow.validate()
    except FlowError as e:
        problems.append(str(e))
    slots = list(flow.slot_paths())
    for path in body.inputs:
        if path not in slots:
            problems.append(f"flow {flow.name!r} has no slot {path!r} (slots: {', '.join(slots)})")
    return {
        "valid": not problems,
        "problems": problems,
        "inputs": {path: len(items) for path, items in body.inputs.items()},
    }
