"""The Redis store's schedules (``weirflow.durable.schedules``): JSON in the ``P:sched`` hash.

A due tick's job is made with the tick's idempotency key, so one job per tick however
many workers fire at once; the schedule is then moved on with a compare-and-set
(``SCHEDULE_PUT``) on the JSON it was read as: a worker that lost that race leaves it
to the one that won.
"""

from __future__ import annotations

import copy

from .models import JobSpec
from .redis_admin import RedisAdmin, _s
from .redis_codec import schedule_from, schedule_text
from .schedules import Fired, Schedule, added

#: how many times ``add_schedule`` reads again when another change came first
SCHEDULE_TRIES = 50


class RedisSchedules(RedisAdmin):
    """Schedules (see ``redis_store.RedisStore``)."""

    async def submit_once(self, spec: JobSpec) -> tuple[str, bool]:
        raise NotImplementedError  # RedisStore's

    async def add_schedule(self, schedule: Schedule) -> Schedule:
        for _ in range(SCHEDULE_TRIES):
            old = await self._call(lambda r: r.hget(self.key("sched"), schedule.name), retry=True)
            new = added(copy.copy(schedule), schedule_from(old) if old else None, self.clock())
            if await self._run(
                "SCHEDULE_PUT", [new.name, _s(old) if old else "", schedule_text(new), new.queue]
            ):
                self._schedule_wakeups.notify(new.queue)
                return new
        raise RuntimeError(f"schedule {schedule.name!r} kept changing")

    async def remove_schedule(self, name: str) -> bool:
        for _ in range(SCHEDULE_TRIES):
            old = await self._call(lambda r: r.hget(self.key("sched"), name), retry=True)
            if old is None:
                return False
            queue = schedule_from(old).queue
            if await self._run("SCHEDULE_PUT", [name, _s(old), "", queue]):
                self._schedule_wakeups.notify(queue)
                return True
        raise RuntimeError(f"schedule {name!r} kept changing")

    async def _all_schedules(self) -> list[tuple[str, Schedule]]:
        raw = await self._call(lambda r: r.hgetall(self.key("sched")), retry=True)
        return sorted(((_s(text), schedule_from(text)) for text in raw.values()), key=lambda x: x[1].name)

    async def list_schedules(self, *, queue: str | None = None) -> list[Schedule]:
        return [s for _, s in await self._all_schedules() if queue is None or s.queue == queue]

    async def fire_schedules(self, queue: str) -> Fired:
        now = self.clock()
        made: list[str] = []
        mine = [(text, s) for text, s in await self._all_schedules() if s.queue == queue]
        due = []
        for text, s in mine:
            if s.next_at > now:
                due.append(s.next_at)
                continue
            tick, next_at, dropped = s.due(now)
            job_id, created = s.last_job_id, False
            if tick is not None:
                job_id, created = await self.submit_once(s.spec(tick))
            moved = copy.copy(s)
            moved.next_at = next_at
            if tick is not None:
                moved.last_at, moved.last_job_id = tick, job_id
            if await self._run("SCHEDULE_PUT", [s.name, text, schedule_text(moved), queue]):
                if dropped:
                    await self.add_event(None, queue, "schedule_skipped", {"schedule": s.name, "fired": tick})
                due.append(moved.next_at)
            if created and job_id is not None:
                made.append(job_id)  # (made once per tick: its idempotency key)
        if made:
            self._wakeups.notify(queue)
        return Fired(made, min(due) if due else None)

    async def wait_for_schedules(self, queue: str, timeout_s: float) -> None:
        self._start_listening()
        await self._schedule_wakeups.wait(queue, timeout_s)
