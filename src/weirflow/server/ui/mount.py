"""``install_ui(app)``: the web UI's static files, pages and session routes on an app."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ..settings import Settings
from .login_limit import LoginLimiter
from .routes import router
from .sessions import Sessions


def install_ui(app: FastAPI) -> None:
    """Add the UI to ``app`` (sessions live in ``app.state.ui_sessions``, the count of bad
    login keys in ``app.state.ui_logins``)."""
    settings: Settings = app.state.settings
    app.state.ui_sessions = Sessions()
    app.state.ui_logins = LoginLimiter(failures=settings.login_failures, window_s=settings.login_window_s)
    static = Path(str(resources.files(__package__).joinpath("static")))
    app.mount("/ui/static", StaticFiles(directory=static), name="ui-static")
    app.include_router(router)
