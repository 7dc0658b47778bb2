"""The libraries' warnings through ``logging`` as structlog lines (``weirflow.logsetup``), in
a fresh interpreter: logging's configuration is process-wide."""

from __future__ import annotations

import subprocess
import sys

SNIPPET = """
import logging
from weirflow.logsetup import library_logs_to_stderr

library_logs_to_stderr(["postgresql://wf:hunter2@db/x"])

def connect():
    url = "postgresql://wf:hunter2@db/x"  # a local a rich traceback would print
    raise OSError("cannot reach postgresql://wf:hunter2@db/x")

pool = logging.getLogger("psycopg.pool")
pool.warning("error connecting in 'weirflow': failed\\n\\tIs the server running?")
try:
    connect()
except OSError:
    logging.getLogger("asyncio").exception("Task exception was never retrieved")
logging.getLogger("psycopg").info("below the last resort's level: not shown")
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")  # an app's own setup
logging.getLogger("app").info("the app's own line")
"""


def test_library_warnings_are_one_structlog_line_with_passwords_masked_and_no_locals() -> None:
    done = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    one_line = "error connecting in 'weirflow': failed Is the server running? [psycopg.pool]"
    assert f"[warning  ] {one_line}" in lines[0]
    assert "[error    ] Task exception was never retrieved" in lines[1] and "[asyncio]" in lines[1]
    assert lines[2] == "Traceback (most recent call last):"  # plain, not a box of locals
    assert "OSError: cannot reach postgresql://wf:***@db/x" in lines
    assert "hunter2" not in done.stderr
    assert "not shown" not in done.stderr
    assert lines[-1] == "app the app's own line"  # logging.basicConfig still takes effect
