"""Worker processes for the crash and command-line tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOWS_MODULE = "tests.durable.flows"


def cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weirflow", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


class WorkerProcess:
    """``weirflow worker`` in a subprocess; its output goes to ``log``."""

    def __init__(self, store_url: str, log: Path, *args: str) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "weirflow",
                "worker",
                "--store",
                store_url,
                "--flows",
                FLOWS_MODULE,
                *args,
            ],
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        """``kill -9``: no cleanup at all."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._out.close()

    def terminate(self, timeout_s: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self._out.close()
        return code

    def __enter__(self) -> WorkerProcess:
        return self

    def wait(self, timeout_s: float = 60) -> int:
        """Wait for the process to end by itself; its exit code."""
        code = self.proc.wait(timeout_s)
        self._out.close()
        return code

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._out.close()
