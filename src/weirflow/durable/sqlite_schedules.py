"""The SQLite store's schedules (``weirflow.durable.schedules``): rows in ``wf_schedules``,
fired in one write transaction with the jobs they make."""

# ruff: noqa: S608 - queries are built from constant column lists and "?" marks, never from values

from __future__ import annotations

import copy

from .models import JobSpec
from .schedules import (
    SCHEDULE_COLUMNS,
    SCHEDULE_SELECT,
    Fired,
    Schedule,
    added,
    schedule_from_row,
    schedule_row,
)
from .sqlite_admin import SqliteAdmin
from .sqlite_base import Conn

#: how long an idle scheduler waits at most: SQLite cannot tell it of another process's
#: new schedule, so one added elsewhere is seen within this time
SCHEDULE_RECHECK_S = 5.0
_MARKS = ", ".join("?" * len(SCHEDULE_COLUMNS))
_UPSERT = f"INSERT OR REPLACE INTO wf_schedules ({SCHEDULE_SELECT}) VALUES ({_MARKS})"


class SqliteSchedules(SqliteAdmin):
    """Schedules (see ``sqlite.SqliteStore``)."""

    def _submit(self, conn: Conn, spec: JobSpec) -> tuple[str, bool]:
        raise NotImplementedError  # SqliteStore's: a job made in the caller's transaction

    async def add_schedule(self, schedule: Schedule) -> Schedule:
        stored = await self._tx(self._add_schedule, schedule)
        self._schedule_wakeups.notify(stored.queue)
        return stored

    def _add_schedule(self, conn: Conn, schedule: Schedule) -> Schedule:
        row = conn.execute(
            f"SELECT {SCHEDULE_SELECT} FROM wf_schedules WHERE name = ?", (schedule.name,)
        ).fetchone()
        new = added(copy.copy(schedule), schedule_from_row(row) if row else None, self.clock())
        conn.execute(_UPSERT, schedule_row(new))
        return new

    async def remove_schedule(self, name: str) -> bool:
        queues = await self._tx(
            lambda conn: conn.execute(
                "DELETE FROM wf_schedules WHERE name = ? RETURNING queue", (name,)
            ).fetchall()
        )
        for (queue,) in queues:
            self._schedule_wakeups.notify(queue)
        return bool(queues)

    @staticmethod
    def _remove_schedule(conn: Conn, name: str) -> list[tuple[str]]:
        return conn.execute("DELETE FROM wf_schedules WHERE name = ? RETURNING queue", (name,)).fetchall()

    async def list_schedules(self, *, queue: str | None = None) -> list[Schedule]:
        rows = await self._call(
            self._read,
            f"SELECT {SCHEDULE_SELECT} FROM wf_schedules WHERE (? IS NULL OR queue = ?) ORDER BY name",
            (queue, queue),
        )
        return [schedule_from_row(r) for r in rows]

    async def fire_schedules(self, queue: str) -> Fired:
        rows = await self._call(self._read, "SELECT min(next_at) FROM wf_schedules WHERE queue = ?", (queue,))
        first = rows[0][0]
        if first is None or first > self.clock():  # nothing due: no write lock taken
            return Fired([], first)
        fired = await self._tx(self._fire, queue)
        if fired.jobs:
            self._wakeups.notify(queue)
        return fired

    def _fire(self, conn: Conn, queue: str) -> Fired:
        now = self.clock()
        made: list[str] = []
        rows = conn.execute(
            f"SELECT {SCHEDULE_SELECT} FROM wf_schedules WHERE queue = ? AND next_at <= ? ORDER BY name",
            (queue, now),
        ).fetchall()
        for row in rows:
            s = schedule_from_row(row)
            tick, next_at, dropped = s.due(now)
            if dropped:
                self._event(conn, None, queue, "schedule_skipped", now, {"schedule": s.name, "fired": tick})
            job_id = s.last_job_id
            if tick is not None:
                job_id, created = self._submit(conn, s.spec(tick))
                if created:
                    made.append(job_id)
            conn.execute(
                "UPDATE wf_schedules SET next_at = ?, last_at = ?, last_job_id = ? WHERE name = ?",
                (next_at, tick if tick is not None else s.last_at, job_id, s.name),
            )
        (first,) = conn.execute("SELECT min(next_at) FROM wf_schedules WHERE queue = ?", (queue,)).fetchone()
        return Fired(made, first)

    async def wait_for_schedules(self, queue: str, timeout_s: float) -> None:
        await self._schedule_wakeups.wait(queue, min(timeout_s, SCHEDULE_RECHECK_S))
