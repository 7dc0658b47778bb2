"""The server's runtime caps written into ``/openapi.json``: a ``wait_s`` or ``timeout_s``
over ``max_wait_s`` or ``max_send_timeout_s`` is refused with ``422``, so the schema says
``maximum`` with the value this server runs with (schemathesis' ST202: a request the
schema allowed was refused)."""

from __future__ import annotations

from typing import Any

from .settings import Settings


def document_caps(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``schema`` with ``maximum`` on every capped value of the in-memory job routes."""
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/api/jobs/"):
            continue  # (the pipelines' waits have fixed maximums of their own, in their models)
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("name") == "wait_s":
                    _cap(parameter["schema"], settings.max_wait_s, "max_wait_s")
    send = schema.get("components", {}).get("schemas", {}).get("SendItems", {})
    timeout = send.get("properties", {}).get("timeout_s")
    if timeout is not None:
        _cap(timeout, settings.max_send_timeout_s, "max_send_timeout_s")
    return schema


def _cap(value_schema: dict[str, Any], cap: float, setting: str) -> None:
    value_schema["maximum"] = cap
    if isinstance(value_schema.get("default"), int | float) and value_schema["default"] > cap:
        value_schema["default"] = cap  # (the server uses the cap when the value is not given)
    said = value_schema.get("description", "").split(" (at most")[0]
    value_schema["description"] = f"{said} (at most {cap:g}, this server's {setting}; more: 422)".strip()
