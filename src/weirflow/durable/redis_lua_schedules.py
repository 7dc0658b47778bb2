"""The Redis store's script that fires a schedule's due tick (``redis_schedules``).

Runs after ``redis_lua.COMMON`` (key layout and helpers there).
"""

from __future__ import annotations

from .redis_lua_jobs import SUBMIT

# ARGV: prefix, now, then SUBMIT's jobs (a MessagePack array: the tick's job, or none when
# the tick is skipped), the schedule's name, its JSON as the firer read it, the JSON of the
# schedule moved on (naming the tick's job), its queue, and the ``schedule_skipped`` event's
# data ("" none).
# Only while the schedule is still as read: the tick's job is made (SUBMIT's body, with the
# tick's idempotency key) and the schedule moved on, in one step. A firer that read the
# schedule before another fired the tick finds it moved and makes nothing, also once
# retention has deleted the tick's job and its key (review s19 I: the key alone let it make
# the job again). Returns
# - {"fired", id, created (1/0)}: the job made (or, a re-run of this very call whose reply
#   was lost, found made: its job id is made per call), the schedule moved on;
# - {"skipped"}: no job (the tick skipped by ``catchup``), the schedule moved on;
# - {"moved", the schedule's JSON now ("" none)}: it changed since it was read: nothing done;
# - {"held", id}: the tick's key is held by a job submitted with it by someone else: nothing
#   done (the client moves the schedule on naming that job);
# - SUBMIT's {"full", ...} (a tick's job has no node: not expected).
FIRE = (
    "local function submit()\n"
    + SUBMIT
    + "\nend\n"
    + r"""
local name, old, new, q = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local tick = cmsgpack.unpack(ARGV[3])
if (redis.call('HGET', P .. ':sched', name) or '') ~= old then
  if #tick > 0 and redis.call('EXISTS', jk(tick[1][1])) == 1 then return {'fired', tick[1][1], 1} end
  return {'moved', redis.call('HGET', P .. ':sched', name) or ''}
end
local made
if #tick > 0 then
  made = submit()
  if made[1] == 'full' then return made end
  if made[2] == 0 then return {'held', made[1]} end
end
redis.call('HSET', P .. ':sched', name, new)
redis.call('PUBLISH', P .. ':n:sched', q)
if ARGV[8] ~= '' then event(false, q, 'schedule_skipped', ARGV[2], ARGV[8]) end
if made then return {'fired', made[1], made[2]} end
return {'skipped'}
"""
)
