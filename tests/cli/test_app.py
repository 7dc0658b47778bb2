"""The command itself: help, the console script entry point, ``python -m weirflow``."""

from __future__ import annotations

from importlib.metadata import entry_points

from weirflow.cli.app import main

from .conftest import Cli


def test_console_script_points_at_main() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "weirflow"]
    assert script.value == "weirflow.cli.app:main"
    assert script.load() is main


def test_help_lists_commands(cli: Cli) -> None:
    p = cli("--help")
    assert p.returncode == 0
    for command in ("run", "validate", "demo"):
        assert command in p.stdout


def test_no_command_shows_help_and_exits_2(cli: Cli) -> None:
    p = cli()
    assert p.returncode == 2
    assert "Usage: weirflow" in p.stdout + p.stderr


def test_unknown_command(cli: Cli) -> None:
    p = cli("frobnicate")
    assert p.returncode == 2
    assert "No such command" in p.stderr
