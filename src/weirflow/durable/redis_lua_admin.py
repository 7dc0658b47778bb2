"""The Redis store's scripts around the jobs: pause, events, the sweeper lock, retention
(deletes), the counts and indexes (reindex, counts) and schedules.

Each runs after ``redis_lua.COMMON`` (key layout and helpers there).
"""

from __future__ import annotations

# ARGV: prefix, queue, now, "1" pause / "0" resume, event kind. Returns 1 when it changed.
PAUSE = r"""
local q, now = ARGV[2], ARGV[3]
local changed
if ARGV[4] == '1' then
  changed = redis.call('HSETNX', P .. ':paused', q, now)
else
  changed = redis.call('HDEL', P .. ':paused', q)
  if changed == 1 then redis.call('PUBLISH', P .. ':n:jobs', q) end
end
if changed == 1 then event(false, q, ARGV[5], now, '{}') end
return changed
"""

# ARGV: prefix, job id ("" none), queue, kind, at, data
ADD_EVENT = r"""
local id = ARGV[2]
if id == '' then id = false end
event(id, ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"""

# ARGV: prefix, owner, now, until. ``rules.may_sweep``. Returns 1 when taken.
SWEEPER = r"""
local holder, exp = unpack(redis.call('HMGET', P .. ':sweeper', 'owner', 'expires_at'))
if holder and holder ~= ARGV[2] and exp and tonumber(exp) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', P .. ':sweeper', 'owner', ARGV[2], 'expires_at', ARGV[4])
return 1
"""

# ARGV: prefix, then id, finished_at pairs: delete each job still finished at that time,
# with its steps, events (their refs in its ``evs`` field and ``P:je:ID`` list) and journal
# (``rules.expired_ids`` chose them). Returns the count.
DELETE = r"""
local n = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local k = jk(id)
  local st, fin, keyfield, q, seq, flow, stalls, evs = unpack(redis.call('HMGET', k, 'status', 'finished_at',
    'keyfield', 'queue', 'seq', 'flow', 'stalls', 'evs'))
  if st and FIN[st] and fin == ARGV[i+1] then
    track(id, q, flow, seq, st, nil, nil, -tonumber(stalls or 0))
    local refs = redis.call('LRANGE', P .. ':je:' .. id, 0, -1)
    for ref in string.gmatch(evs or '', '%S+') do refs[#refs+1] = ref end
    for _, ref in ipairs(refs) do
      if string.sub(ref, 1, 1) == '{' then  -- (the event's text: a store an older version wrote)
        local e = cjson.decode(ref)
        redis.call('ZREM', P .. ':ev', ref)
        ref = e['id'] .. ':' .. e['kind']
      else
        local eid = string.match(ref, '^(%d+):')
        redis.call('ZREMRANGEBYSCORE', P .. ':ev', eid, eid)
      end
      redis.call('ZREM', P .. ':fin:' .. q, ref)
    end
    if keyfield then redis.call('HDEL', P .. ':keys', keyfield) end
    redis.call('DEL', k, P .. ':je:' .. id, P .. ':s:' .. id, P .. ':sr:' .. id, P .. ':sx:' .. id,
      P .. ':jr:' .. id)
    redis.call('ZREM', P .. ':jobs', id)
    redis.call('ZREM', P .. ':done', id)
    n = n + 1
  end
end
return n
"""

# ARGV: prefix, chunk size. When ``P:ixv`` is not ``IXV`` (a store an older version wrote),
# the counts and indexes of ``track`` are made again from the jobs, ``chunk`` jobs per run (a
# run is atomic and short: Redis answers others between runs): the first run drops what
# there was, each run indexes the next jobs by ``seq`` as they are then and keeps the ``seq``
# it reached in ``P:ixcur`` (the other scripts keep the indexes of the jobs up to it), the
# last one sets ``P:ixv``. Returns 1 while there is more to do. A store holding nothing is
# left untouched. ``P:ix:nodes`` is kept by ``nj_add``/``nj_rem`` for every job throughout (it
# never names a node without jobs), and gains the node of each job a run reaches.
REINDEX = r"""
if redis.call('GET', P .. ':ixv') == IXV then return 0 end
local statuses = {'queued', 'running', 'completed', 'failed', 'cancelled'}
local cur = redis.call('GET', P .. ':ixcur')
if not cur then
  local queues = redis.call('SMEMBERS', P .. ':queues')
  if #queues == 0 and redis.call('EXISTS', P .. ':jobs') == 0 then return 0 end
  -- (``P:ix:s:STATUS``, ``P:ix:qs:Q:running``: kept by index versions before "3")
  for _, st in ipairs(statuses) do redis.call('DEL', P .. ':ix:s:' .. st) end
  for _, q in ipairs(queues) do
    redis.call('DEL', P .. ':cnt:' .. q, P .. ':ix:q:' .. q, qk(q, 'qat'))
    for _, st in ipairs(statuses) do redis.call('DEL', P .. ':ix:qs:' .. q .. ':' .. st) end
  end
  for _, f in ipairs(redis.call('SMEMBERS', P .. ':flows')) do redis.call('DEL', P .. ':ix:f:' .. f) end
  redis.call('DEL', P .. ':ix:nodes')
  cur = '0'
end
local chunk = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', P .. ':jobs', '(' .. cur, '+inf', 'WITHSCORES', 'LIMIT', 0, chunk)
for i = 1, #ids, 2 do
  local id = ids[i]
  local st, q, seq, flow, run_at, stalls, node = unpack(redis.call('HMGET', jk(id), 'status', 'queue', 'seq',
    'flow', 'run_at', 'stalls', 'node'))
  if st then
    redis.call('SADD', P .. ':queues', q)
    index_now(id, q, flow, seq, nil, st, run_at, tonumber(stalls or 0))
    if node and redis.call('SISMEMBER', njk(node), id) == 1 then
      redis.call('SADD', P .. ':ix:nodes', node)
    end
  end
  cur = ids[i + 1]
end
if #ids < 2 * chunk then
  redis.call('SET', P .. ':ixv', IXV)
  redis.call('DEL', P .. ':ixcur')
  return 0
end
redis.call('SET', P .. ':ixcur', cur)
return 1
"""

# ARGV: prefix, now. Per queue: {queue, count of each status (``STATUSES`` order), stalls,
# delayed (queued, ``run_at`` after now), oldest due ``run_at`` or ""}.
COUNTS = r"""
local now = ARGV[2]
local statuses = {'queued', 'running', 'completed', 'failed', 'cancelled'}
local out = {}
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
  local row = {q}
  local cnt = P .. ':cnt:' .. q
  for _, st in ipairs(statuses) do row[#row+1] = tonumber(redis.call('HGET', cnt, st) or 0) end
  row[#row+1] = tonumber(redis.call('HGET', cnt, 'stalls') or 0)
  row[#row+1] = redis.call('ZCOUNT', qk(q, 'qat'), '(' .. now, '+inf')
  local first = redis.call('ZRANGEBYSCORE', qk(q, 'qat'), '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  if #first > 0 then row[#row+1] = first[2] else row[#row+1] = '' end
  out[#out+1] = row
end
return out
"""

# ARGV: prefix, name, expected JSON ("" absent), new JSON ("" delete), queue.
# Returns 1, or 0 when the schedule changed meanwhile.
SCHEDULE_PUT = r"""
local cur = redis.call('HGET', P .. ':sched', ARGV[2])
if (cur or '') ~= ARGV[3] then return 0 end
if ARGV[4] == '' then redis.call('HDEL', P .. ':sched', ARGV[2])
else redis.call('HSET', P .. ':sched', ARGV[2], ARGV[4]) end
redis.call('PUBLISH', P .. ':n:sched', ARGV[5])
return 1
"""
