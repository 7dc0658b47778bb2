"""structlog, imported by the command line before anything else imports it, without rich.

structlog looks for rich when it is imported (``structlog.dev``, ``structlog.tracebacks``)
and, finding it, imports its console, traceback and pretty-printer modules with attrs and
pygments: about a sixth of a ``weirflow worker``'s start-up, for a traceback renderer the
command line does not use (``main()`` renders tracebacks plainly, without local variables,
which may hold a store URL's password). So rich is hidden from structlog while it is
imported here; it stays importable for everything else (tables, progress, typer's help).
A process that imported structlog or rich before is left as it is.
"""

from __future__ import annotations

import sys

if "structlog" not in sys.modules and "rich" not in sys.modules:
    sys.modules["rich"] = None  # type: ignore[assignment]  # (``import rich`` raises ImportError)
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]
