"""A typed client for the weirflow HTTP API: ``Client`` (blocking) and ``AsyncClient``.

Answers are the server's own response models (``JobInfo``, ``JobResultInfo``,
``DebugView``...); errors are the exceptions the same call raises in process, each
also a ``RequestError`` with the HTTP ``status`` and ``detail``.
"""

from __future__ import annotations

from ..errors import RequestError
from .aio import AsyncClient
from .calls import AuthError, Event, NotFoundError, UnavailableError
from .sync import Client

__all__ = ["AsyncClient", "AuthError", "Client", "Event", "NotFoundError", "RequestError", "UnavailableError"]
