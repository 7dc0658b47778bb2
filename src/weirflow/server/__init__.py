"""The HTTP API: FastAPI over one ``Engine`` (``weirflow serve``).

``create_app(settings, flows=...)`` builds the app; ``make_server`` runs it under
uvicorn. Route modules (``routes/``) only translate HTTP to ``JobService`` calls.
"""

from __future__ import annotations

from ..flow.source import load_flows
from .app import create_app
from .settings import Role, Settings, SettingsError, load_settings
from .uvicorn_server import Server, make_server

__all__ = [
    "Role",
    "Server",
    "Settings",
    "SettingsError",
    "create_app",
    "load_flows",
    "load_settings",
    "make_server",
]
