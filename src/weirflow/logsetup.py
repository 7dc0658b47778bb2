"""Warnings the libraries log through ``logging`` (psycopg's pool during an outage,
redis-py, asyncio), as structlog lines on stderr: a timestamp, the level, the message on
one line, the logger's name, like the engine's own lines.

Without this they reached stderr through logging's *last-resort* handler, bare and several
lines long, between the worker's log lines. ``library_logs_to_stderr()`` replaces that
last-resort handler and nothing else: it is used only while no handler is configured, so
an application (or a flow module) that calls ``logging.basicConfig`` or configures
logging itself keeps its own configuration, levels included. Tracebacks are printed
plainly (no local variables, which may hold a store URL's password), and every password
of ``secret_urls`` is masked in what is printed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

from .redact import redact_text


def _one_line(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A library's multi-line message (psycopg's "connection failed: ...\\n\\tIs the server
    running...") as one log line."""
    message = event.get("event")
    if isinstance(message, str) and "\n" in message:
        event["event"] = " ".join(part.strip() for part in message.splitlines() if part.strip())
    return event


class _LastResort(logging.Handler):
    """Each record formatted by structlog, written to the ``sys.stderr`` of the moment (it
    may be replaced), with the passwords of ``secret_urls`` masked."""

    def __init__(self, secret_urls: Iterable[str]) -> None:
        import structlog  # (here: a supervised child imports it its own way first, see _structlog)

        super().__init__(logging.WARNING)
        self.secret_urls = list(secret_urls)
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name,
                    structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
                    _one_line,
                ],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(
                        colors=False, exception_formatter=structlog.dev.plain_traceback
                    ),
                ],
            )
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            for url in self.secret_urls:
                text = redact_text(text, url)
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 (logging's rule: a failing handler never raises)
            self.handleError(record)


def library_logs_to_stderr(secret_urls: Iterable[str] = ()) -> None:
    """Make logging's last-resort handler (records logged while no handler is configured)
    write structlog lines, with the passwords of ``secret_urls`` masked."""
    logging.lastResort = _LastResort(secret_urls)
