"""The ``/api/pipelines`` calls as ``Call``s (``weirflow.supervise`` over HTTP)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..server.pipeline_models import PipelineDeadLetters, PipelineOut, PipelineResults
from .calls import Call, Inputs, field, items, model, models, query

__all__ = ["PipelineDeadLetters", "PipelineOut", "PipelineResults"]


def _pipeline(pipeline_id: str, rest: str = "") -> str:
    return f"/api/pipelines/{quote(pipeline_id, safe='')}{rest}"


def start(
    flow: str, inputs: Inputs | None, name: str | None, restart: str, max_rss_mb: float | None
) -> Call[PipelineOut]:
    body = {"flow": flow, "inputs": items(inputs), "name": name, "restart": restart, "max_rss_mb": max_rss_mb}
    return Call("POST", "/api/pipelines", model(PipelineOut), json=body)


def listing() -> Call[list[PipelineOut]]:
    return Call("GET", "/api/pipelines", models(PipelineOut))


def get(pipeline_id: str) -> Call[PipelineOut]:
    return Call("GET", _pipeline(pipeline_id), model(PipelineOut))


def pause(pipeline_id: str) -> Call[PipelineOut]:
    return Call("POST", _pipeline(pipeline_id, "/pause"), model(PipelineOut))


def resume(pipeline_id: str) -> Call[PipelineOut]:
    return Call("POST", _pipeline(pipeline_id, "/resume"), model(PipelineOut))


def send(pipeline_id: str, slot: str, values: list[Any], timeout_s: float) -> Call[int]:
    body = {"slot": slot, "items": values, "timeout_s": timeout_s}
    return Call("POST", _pipeline(pipeline_id, "/input"), field("accepted"), json=body)


def results(
    pipeline_id: str, max_items: int, wait_s: float, peek: bool = False, before: int | None = None
) -> Call[PipelineResults]:
    params = query(max=max_items, wait_s=wait_s, peek="true" if peek else None, before=before)
    return Call("GET", _pipeline(pipeline_id, "/results"), model(PipelineResults), params=params)


def dead_letters(pipeline_id: str) -> Call[PipelineDeadLetters]:
    return Call("GET", _pipeline(pipeline_id, "/dead-letters"), model(PipelineDeadLetters))


def stop(pipeline_id: str, grace_s: float | None) -> Call[PipelineOut]:
    return Call("DELETE", _pipeline(pipeline_id), model(PipelineOut), params=query(grace_s=grace_s))


def forget(pipeline_id: str) -> Call[PipelineOut]:
    return Call("DELETE", _pipeline(pipeline_id), model(PipelineOut), params=query(forget="true"))
