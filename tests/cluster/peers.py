"""Driving ``peer.py`` processes from a test or a benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]


class Peer:
    """One registry process: ``ask(op, ...)`` sends a command and returns its answer."""

    def __init__(self, url: str, *, ttl_s: float = 30.0, log_maxlen: int = 10_000) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.peer", url, str(ttl_s), str(log_maxlen)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"peer exited with {self.proc.wait()}")
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps({"op": op, **args}).decode() + "\n")
        self.proc.stdin.flush()

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self._read()

    def receive(self) -> dict[str, Any]:
        return self._read()

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def cont(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            try:
                self.send("quit")
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
