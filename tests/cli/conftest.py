"""Run the real command line in a subprocess, from the repository root."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOWS = "tests/cli/flows"

Cli = Callable[..., subprocess.CompletedProcess[str]]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m weirflow ARGS`` with stdout and stderr captured (neither is a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "weirflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def cli() -> Cli:
    return run_cli
