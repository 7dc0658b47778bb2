"""The click exceptions typer raises: typer 0.2x carries its own copy of click
(``typer._click``); older releases use the ``click`` package."""

from __future__ import annotations

try:
    from typer._click import exceptions as clicks
except ImportError:  # pragma: no cover - typer before it vendored click
    from click import exceptions as clicks  # type: ignore[no-redef]

__all__ = ["clicks"]
