"""A throw-away PostgreSQL server on a loopback port, for the tests and the benchmarks.

``initdb`` refuses to run as root, so as root the server's processes run as the
``postgres`` OS user (``runuser``) in a data folder handed to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg


def find_bin(name: str) -> str | None:
    """``name`` from the newest ``/usr/lib/postgresql/*/bin``, else from PATH."""
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]), reverse=True
    )
    if candidates:
        return candidates[0]
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """``start()`` it, ``url(db)`` to connect, ``new_database()`` per test, ``stop()`` at the end."""

    def __init__(self) -> None:
        initdb = find_bin("initdb")
        pg_ctl = find_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb): scripts/test installs it")
        self.initdb = initdb
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="weirflow-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self._dbs = 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> None:
        self._run(
            self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        done = self._run(
            self.pg_ctl,
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n{log[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        """Stop the server and delete its files. A session's server holds a database per
        test (hundreds of thousands of files): deleting them took over 120 s on a loaded
        machine, inside the last test's timeout. The tree is renamed away at once and
        removed by a background ``rm -rf``, which ends by itself."""
        self.stop("immediate")
        if not self.root.exists():
            return
        doomed = self.root.with_name(self.root.name + ".deleted")
        try:
            self.root.rename(doomed)
        except OSError:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        # (the shell leaves ``rm`` running in the background and exits at once)
        subprocess.run(
            ["sh", "-c", 'rm -rf -- "$1" &', "sh", str(doomed)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=30,
        )

    @contextlib.contextmanager
    def stopped(self, *, backends: bool = True) -> Iterator[None]:
        """SIGSTOP the server for the block (its postmaster: new connections are taken and
        never answered; with ``backends``, every open connection's backend too), SIGCONT after."""
        postmaster = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
        processes = [postmaster, *(postmaster.children(recursive=True) if backends else [])]
        # (a backend may end between the listing and its signal, or be a zombie already:
        # one that is gone needs neither; the postmaster itself must be there)
        postmaster.suspend()
        for process in processes[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.suspend()
        try:
            yield
        finally:
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.resume()

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        self._dbs += 1
        name = f"wf_{os.getpid()}_{self._dbs}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def started_server() -> PgServer:
    server = PgServer()
    try:
        server.init()
        server.start()
    except BaseException:
        server.destroy()
        raise
    return server
