"""``docs/reference.md`` mentions every HTTP route the server documents and every command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from weirflow.cli.app import app
from weirflow.server import Settings, create_app

REFERENCE = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text()


def test_every_route_of_the_openapi_schema_is_in_the_reference() -> None:
    schema = create_app(Settings(store="memory://"), flows="tests.server.flows.served").openapi()
    routes = [f"{method.upper()} {path}" for path, ops in schema["paths"].items() for method in ops]
    assert len(routes) > 40
    missing = [r for r in routes if f"`{r}`" not in REFERENCE]
    assert missing == [], f"docs/reference.md does not mention: {missing}"


def _commands(command: Any, prefix: str) -> list[str]:
    out = []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        path = f"{prefix} {name}"
        out.append(path)
        out.extend(_commands(sub, path))
    return out


def test_every_command_is_in_the_reference() -> None:
    commands = _commands(typer.main.get_command(app), "weirflow")
    assert "weirflow jobs wait" in commands
    missing = [c for c in commands if f"`{c}" not in REFERENCE]
    assert missing == [], f"docs/reference.md does not mention: {missing}"
