"""``Debugger``: the debug sessions of one engine's jobs (hangs off whatever owns the
engine, e.g. the HTTP app's state — never a process-wide registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .session import DebugSession

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..runtime.engine import Engine
    from .session import Hit


class Debugger:
    """Creates a session per job on first use and forgets it when asked."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: dict[str, DebugSession] = {}
        self.on_hit: list[Callable[[DebugSession, Hit], None]] = []

    def session(self, job_id: str) -> DebugSession:
        """The job's session (attached on first use); ``JobError`` for an unknown job."""
        session = self.sessions.get(job_id)
        if session is None:
            job = self.engine.get(job_id)
            session = DebugSession.attach(job)
            session.on_hit.extend(self.on_hit)
            self.sessions[job_id] = session
        return session

    def existing(self, job_id: str) -> DebugSession | None:
        return self.sessions.get(job_id)

    def forget(self, job_id: str) -> None:
        session = self.sessions.pop(job_id, None)
        if session is not None and not session.job.finished:
            session.detach()
