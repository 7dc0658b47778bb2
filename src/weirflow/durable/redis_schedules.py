"""The Redis store's schedules (``weirflow.durable.schedules``): JSON in the ``P:sched`` hash.

A due tick's job is made, with the tick's idempotency key, by the script that moves the
schedule on (``FIRE``), only while the schedule is still the JSON the firer read: so a
tick is one job however many workers fire it, also when a firer was paused between its
read and its firing while another fired the tick and retention deleted that job and its
key. A worker that lost the race leaves the schedule to the one that won.
"""

from __future__ import annotations

import copy
from typing import Any

import msgpack

from ..errors import StoreError
from .models import JobSpec
from .redis_admin import RedisAdmin, _json, _s
from .redis_codec import num, schedule_from, schedule_text
from .schedules import Fired, Schedule, added

#: how many times ``add_schedule`` reads again when another change came first
SCHEDULE_TRIES = 50


class RedisSchedules(RedisAdmin):
    """Schedules (see ``redis_store.RedisStore``)."""

    def _submitted(self, spec: JobSpec, now: float) -> list[Any]:
        raise NotImplementedError  # RedisStore's: a new job as the SUBMIT script takes it

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
        due: list[float] = []
        for text, s in await self._all_schedules():
            if s.queue != queue:
                continue
            if s.next_at > now:
                due.append(s.next_at)
                continue
            job_id, next_at = await self._fire(text, s, now)
            if job_id is not None:
                made.append(job_id)
            if next_at is not None:
                due.append(next_at)
        if made:
            self._wakeups.notify(queue)
        return Fired(made, min(due) if due else None)

    async def _fire(self, text: str, s: Schedule, now: float) -> tuple[str | None, float | None]:
        """Fire due schedule ``s`` (read as ``text``): the job it made (``None``: none) and
        its next tick (``None``: it is gone)."""
        tick, next_at, dropped = s.due(now)
        moved = copy.copy(s)
        moved.next_at = next_at
        job = [] if tick is None else [self._submitted(s.spec(tick), now)]
        if tick is not None:
            moved.last_at, moved.last_job_id = tick, job[0][0]
        skipped = _json({"schedule": s.name, "fired": tick}) if dropped else ""
        args = [num(now), msgpack.packb(job), s.name, text, schedule_text(moved), s.queue, skipped]
        # (safe to repeat: a re-run finds its own job made, see FIRE)
        out = await self._run("FIRE", args, retry=True)
        what = _s(out[0])
        if what == "fired":
            return (_s(out[1]) if int(out[2]) else None), next_at
        if what == "skipped":
            return None, next_at
        if what == "moved":  # another firer (or a change) came first: it moved the schedule
            return None, schedule_from(out[1]).next_at if out[1] else None
        if what == "held":  # the tick's key was taken by a job submitted with it: that is its job
            moved.last_job_id = _s(out[1])
            put = await self._run("SCHEDULE_PUT", [s.name, text, schedule_text(moved), s.queue])
            if put and dropped:
                data = {"schedule": s.name, "fired": tick}
                await self.add_event(None, s.queue, "schedule_skipped", data)
            return None, next_at
        raise StoreError(f"schedule {s.name!r}: unexpected answer of the firing: {what}")

    async def wait_for_schedules(self, queue: str, timeout_s: float) -> None:
        self._start_listening()
        await self._schedule_wakeups.wait(queue, timeout_s)
