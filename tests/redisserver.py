"""A throw-away ``redis-server`` on a loopback port, for the tests and the benchmarks.

``scripts/test`` installs Debian's ``redis-server`` when it is missing. A server
is started with persistence off unless asked (``appendonly=True`` for the
restart tests), with many logical databases so each test gets a fresh one from
``new_database()``. Readiness is the server's own "Ready to accept connections"
line on its stdout, waited on as an event (no polling).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``start()`` it, ``url(db)`` to connect, ``new_database()`` per test, ``destroy()`` at the end.

    ``kill()`` (SIGKILL), ``stop()`` (SIGTERM, saves the AOF), ``pause()``/``cont()``
    (SIGSTOP/SIGCONT) and ``start()`` again on the same port and data folder let a
    test crash, hang and restart the server under a client.
    """

    def __init__(
        self, *, appendonly: bool = False, appendfsync: str = "everysec", databases: int = 4096
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: scripts/test installs it")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="weirflow-redis-"))
        self.port = free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.databases = databases
        self.log_lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._dbs = 0
        self._drain: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server is not running"
        return self.proc.pid

    def start(self, *, timeout_s: float = 30.0) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.root),
            "--databases", str(self.databases),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--loglevel", "notice",
        ]  # fmt: skip
        ready = threading.Event()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.proc = proc

        def drain() -> None:
            assert proc.stdout is not None
            with proc.stdout:
                for line in proc.stdout:
                    with self._lock:
                        self.log_lines.append(line.rstrip())
                        del self.log_lines[:-500]
                    if "Ready to accept connections" in line:
                        ready.set()
            ready.set()  # the server exited: let start() see it

        self._drain = threading.Thread(target=drain, name=f"redis-{self.port}-log", daemon=True)
        self._drain.start()
        if not ready.wait(timeout_s) or proc.poll() is not None:
            self.kill()
            tail = "\n".join(self.log_lines[-20:])
            raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL: what is not yet in the AOF is lost, as in a real crash."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: redis-server flushes the AOF and exits."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        if self._drain is not None:
            self._drain.join(timeout=30)  # closes the server's stdout
        self.proc = None
        self._drain = None

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def cont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """The URL of a logical database no other test of this server has used."""
        with self._lock:
            self._dbs += 1
            if self._dbs >= self.databases:
                raise RuntimeError(f"more than {self.databases} databases asked of one server")
            return self.url(self._dbs)


def started_server(**options: object) -> RedisServer:
    server = RedisServer(**options)  # type: ignore[arg-type]
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    return server
