# ruff: noqa: S608 - queries are built from constant column lists and %s marks, never from values
"""The PostgreSQL store's schedules (``weirflow.durable.schedules``): rows in ``wf_schedules``,
fired under ``FOR UPDATE SKIP LOCKED`` in one transaction with the jobs they make."""

from __future__ import annotations

import copy
import uuid

from ..storable import pg_json
from .models import JobSpec, backoff_to_json
from .postgres_admin import PostgresAdmin
from .postgres_base import CHANNEL, SCHEDULE_CHANNEL, Conn
from .schedules import (
    SCHEDULE_COLUMNS,
    SCHEDULE_SELECT,
    Fired,
    Schedule,
    added,
    schedule_from_row,
    schedule_row,
)

_MARKS = ", ".join(["%s"] * len(SCHEDULE_COLUMNS))
_UPSERT = (
    f"INSERT INTO wf_schedules ({SCHEDULE_SELECT}) VALUES ({_MARKS}) ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SCHEDULE_COLUMNS if c != "name")
)


class PostgresSchedules(PostgresAdmin):
    """Schedules (see ``postgres.PostgresStore``)."""

    async def add_schedule(self, schedule: Schedule) -> Schedule:
        async with self._tx() as conn:
            cur = await conn.execute(
                f"SELECT {SCHEDULE_SELECT} FROM wf_schedules WHERE name = %s FOR UPDATE", (schedule.name,)
            )
            row = await cur.fetchone()
            new = added(copy.copy(schedule), schedule_from_row(row) if row else None, self.clock())
            await conn.execute(_UPSERT, schedule_row(new))
            await conn.execute("SELECT pg_notify(%s, %s)", (SCHEDULE_CHANNEL, new.queue))
        self._schedule_wakeups.notify(new.queue)
        return new

    async def remove_schedule(self, name: str) -> bool:
        async with self._tx() as conn:
            cur = await conn.execute("DELETE FROM wf_schedules WHERE name = %s RETURNING queue", (name,))
            row = await cur.fetchone()
            if row is not None:
                await conn.execute("SELECT pg_notify(%s, %s)", (SCHEDULE_CHANNEL, row[0]))
        if row is not None:
            self._schedule_wakeups.notify(row[0])
        return row is not None

    async def list_schedules(self, *, queue: str | None = None) -> list[Schedule]:
        rows = await self._fetch(
            f"SELECT {SCHEDULE_SELECT} FROM wf_schedules WHERE (%s::text IS NULL OR queue = %s)"
            " ORDER BY name",
            (queue, queue),
        )
        return [schedule_from_row(r) for r in rows]

    async def fire_schedules(self, queue: str) -> Fired:
        now = self.clock()
        made: list[str] = []
        async with self._tx() as conn:
            # a schedule another worker is firing is skipped: it moves that one on
            cur = await conn.execute(
                f"SELECT {SCHEDULE_SELECT} FROM wf_schedules WHERE queue = %s AND next_at <= %s"
                " ORDER BY name FOR UPDATE SKIP LOCKED",
                (queue, now),
            )
            for row in await cur.fetchall():
                s = schedule_from_row(row)
                tick, next_at, dropped = s.due(now)
                if dropped:
                    data = {"schedule": s.name, "fired": tick}
                    await self._event(conn, None, queue, "schedule_skipped", now, data)
                job_id = s.last_job_id
                if tick is not None:
                    job_id, created = await self._insert_job(conn, s.spec(tick), now)
                    if created:
                        made.append(job_id)
                await conn.execute(
                    "UPDATE wf_schedules SET next_at = %s, last_at = %s, last_job_id = %s WHERE name = %s",
                    (next_at, tick if tick is not None else s.last_at, job_id, s.name),
                )
            cur = await conn.execute("SELECT min(next_at) FROM wf_schedules WHERE queue = %s", (queue,))
            found = await cur.fetchone()
        if made:
            self._wakeups.notify(queue)
        return Fired(made, found[0] if found else None)

    async def _insert_job(self, conn: Conn, spec: JobSpec, now: float) -> tuple[str, bool]:
        """A tick's job in the caller's transaction: ``(id, created)``; a job of that key
        already made (by another worker's firing of the same tick) is returned as it is."""
        cur = await conn.execute(
            "INSERT INTO wf_jobs (id, flow, inputs, queue, status, max_attempts, backoff, priority,"
            " run_at, idempotency_key, timeout_s, created_at) VALUES (%s, %s, %s::jsonb, %s, 'queued',"
            " %s, %s::jsonb, %s, %s, %s, %s, %s)"
            " ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
            (
                uuid.uuid4().hex,
                spec.flow,
                pg_json(spec.inputs),
                spec.queue,
                spec.max_attempts,
                backoff_to_json(spec.backoff),
                spec.priority,
                now + spec.delay_s,
                spec.idempotency_key,
                spec.timeout_s,
                now,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            cur = await conn.execute(
                "SELECT id FROM wf_jobs WHERE queue = %s AND idempotency_key = %s",
                (spec.queue, spec.idempotency_key),
            )
            found = await cur.fetchone()
            return (str(found[0]) if found else ""), False
        await self._event(conn, row[0], spec.queue, "queued", now, {"delay_s": spec.delay_s})
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, spec.queue))
        return str(row[0]), True

    async def wait_for_schedules(self, queue: str, timeout_s: float) -> None:
        self._start_listening()
        await self._schedule_wakeups.wait(queue, timeout_s)
