"""structlog imported without rich, by the processes weirflow starts (the command line, a
supervised child) before anything else imports it; and their renderer, printing tracebacks
plainly.

structlog looks for rich when it is imported (``structlog.dev``, ``structlog.tracebacks``)
and, finding it, imports its console, traceback and pretty-printer modules with attrs and
pygments: about a sixth of a ``weirflow worker``'s start-up, for a traceback renderer these
processes do not use (``plain_tracebacks()``). So rich is hidden from structlog while it is
imported here; it stays importable for everything else (tables, progress, typer's help).
A process that imported structlog or rich before is left as it is. Only weirflow's own
entry points import this module (``weirflow.cli.app``, ``supervise.channel.child_entry``):
importing weirflow as a library changes nothing of an application's structlog.
"""

from __future__ import annotations

import sys
from typing import Any

if "structlog" not in sys.modules and "rich" not in sys.modules:
    sys.modules["rich"] = None  # type: ignore[assignment]  # (``import rich`` raises ImportError)
    try:
        import structlog
    finally:
        del sys.modules["rich"]
else:
    import structlog


def plain_tracebacks() -> list[Any]:
    """structlog's default processors, its console renderer printing tracebacks plainly: no
    local variables (rich's and better-exceptions' renderers show them; they may hold a
    store URL's password), as ``library_logs_to_stderr`` prints the libraries' lines."""
    processors = list(structlog.get_config()["processors"])
    for i, processor in enumerate(processors):
        if isinstance(processor, structlog.dev.ConsoleRenderer):
            processors[i] = structlog.dev.ConsoleRenderer(
                colors=getattr(processor, "colors", True), exception_formatter=structlog.dev.plain_traceback
            )
    return processors


def configure_plainly(**options: Any) -> None:
    """``structlog.configure(processors=plain_tracebacks(), **options)`` unless the process
    configured structlog already."""
    if not structlog.is_configured():
        structlog.configure(processors=plain_tracebacks(), **options)
