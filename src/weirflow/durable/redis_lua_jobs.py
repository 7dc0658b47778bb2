"""The Redis store's scripts of a job's lifecycle: submit, claim, renew, complete, the
compare-and-set ``PUT`` of the rules' other changes, and the reassignment of a node's jobs.

Each runs after ``redis_lua.COMMON`` (key layout and helpers there).
"""

from __future__ import annotations

# ARGV: prefix, now, then one MessagePack array (packing a batch in one argument spares
# the client encoding every field as an argument of its own) of jobs, each
# [id, keyfield ("" none), queue, priority, run_at, runkey, delayed ("1"/"0"), event data,
# [field, value, ...], node ("" none), node capacity, flow], every value text.
# Returns id, created (1/0) per job. A job id already present (the script ran before, its
# answer lost with the connection: ids are made per call, so only a re-run of the same call
# has them) answers as created, also when it holds its idempotency key: a retried submit is
# harmless and tells the truth (a 201, a schedule's wake-up).
# Jobs assigned to a node are checked first (``rules.node_demand``, ``rules.node_refusal``):
# when a node's queued and running jobs would go past its capacity, nothing is written and
# the answer is {"full", node, capacity, assigned}.
SUBMIT = r"""
local now = ARGV[2]
local out = {}
local woken = {}
local jobs = cmsgpack.unpack(ARGV[3])
local demand, caps, keys = {}, {}, {}
for _, job in ipairs(jobs) do
  local id, keyfield, node = job[1], job[2], job[10]
  local makes = redis.call('EXISTS', jk(id)) == 0
  if keyfield ~= '' then
    makes = makes and not keys[keyfield] and not redis.call('HGET', P .. ':keys', keyfield)
    keys[keyfield] = true
  end
  if makes and node ~= '' then
    demand[node] = (demand[node] or 0) + 1
    local cap = tonumber(job[11])
    if not caps[node] or cap < caps[node] then caps[node] = cap end
  end
end
for node, n in pairs(demand) do
  local assigned = redis.call('SCARD', njk(node))
  if assigned + n > caps[node] then return {'full', node, caps[node], assigned} end
end
-- a new store is indexed from its first job on
if redis.call('EXISTS', P .. ':queues') == 0 then redis.call('SET', P .. ':ixv', IXV) end
-- which jobs are made (an idempotency key held by an earlier job, of the store or of this
-- batch, answers with that job), then their writes, one command per set for them all
local made, mine = {}, {}
for _, job in ipairs(jobs) do
  local id, keyfield = job[1], job[2]
  local held = false
  if keyfield ~= '' then held = mine[keyfield] or redis.call('HGET', P .. ':keys', keyfield) end
  if held and held ~= id then
    out[#out+1] = held; out[#out+1] = 0
  elseif redis.call('EXISTS', jk(id)) == 1 then  -- (its key held by this very job: made by this call)
    out[#out+1] = id; out[#out+1] = 1
  else
    if keyfield ~= '' then mine[keyfield] = id end
    made[#made+1] = job
    out[#out+1] = id; out[#out+1] = 1
  end
end
if #made > 0 then
  local last = redis.call('INCRBY', P .. ':seq', #made)
  local first = evids(#made)
  local all, ready, delayed, queues, keyed, tracked, evs = {}, {}, {}, {}, {}, {}, {}
  for i, job in ipairs(made) do
    local id, keyfield, q, prio, run_at, runkey, data, fields, node =
      job[1], job[2], job[3], job[4], job[5], job[6], job[8], job[9], job[10]
    local seq = int(last - #made + i)
    local member = runkey .. ':' .. string.format('%015d', seq) .. ':' .. id
    if keyfield ~= '' then
      fields[#fields+1] = 'keyfield'; fields[#fields+1] = keyfield
      keyed[#keyed+1] = keyfield; keyed[#keyed+1] = id
    end
    fields[#fields+1] = 'evs'; fields[#fields+1] = jobref(nil, int(first + i), 'queued')
    redis.call('HSET', jk(id), 'seq', seq, 'member', member, 'ver', 0, unpack(fields))
    all[#all+1] = seq; all[#all+1] = id
    if not woken[q] then woken[q] = true; queues[#queues+1] = q end
    if job[7] == '1' then
      if not delayed[q] then delayed[q] = {} end
      local d = delayed[q]
      d[#d+1] = run_at; d[#d+1] = id
    else
      local key = readyk(q, node)
      if not ready[key] then ready[key] = {} end
      local r = ready[key]
      r[#r+1] = -tonumber(prio); r[#r+1] = member
    end
    if node ~= '' then nj_add(node, id) end
    tracked[#tracked+1] = {id, q, job[12], seq, run_at}
    evs[#evs+1] = {id, q, 'queued', data}
  end
  many('HSET', P .. ':keys', keyed)
  many('ZADD', P .. ':jobs', all)
  many('SADD', P .. ':queues', queues)
  track_new(tracked)
  for q, d in pairs(delayed) do many('ZADD', qk(q, 'delayed'), d) end
  for key, r in pairs(ready) do many('ZADD', key, r) end
  events(evs, now, first)
end
for q, _ in pairs(woken) do redis.call('PUBLISH', P .. ':n:jobs', q) end
return out
"""

# ARGV: prefix, queue, worker, now, lease_until, limit, concurrency ("" none),
# rate limit ("" none), when a claim made now leaves the rate window (``rules.in_rate_window``:
# the rate zset is scored by that time, so "oldest" is the earliest such time), the
# claiming node ("" none).
# Takes up to ``limit`` due jobs by priority, run_at, seq (``rules.ready_order``), the node's
# own first, then unassigned ones, each changed as ``rules.claimed`` does, within
# ``rules.claim_allowance``.
# Returns {running, recent, oldest or "", next delayed run_at or "", job hashes...}, each hash as
# a JSON object of its fields to their values (text).
CLAIM = r"""
local q, worker, now, lease, limit = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local mynode = ARGV[10]
if redis.call('HEXISTS', P .. ':paused', q) == 1 then return {0, 0, '', '', 'paused'} end
local due = redis.call('ZRANGEBYSCORE', qk(q, 'delayed'), '-inf', now)
for _, id in ipairs(due) do
  local prio, member, node = unpack(redis.call('HMGET', jk(id), 'priority', 'member', 'node'))
  redis.call('ZREM', qk(q, 'delayed'), id)
  if member then redis.call('ZADD', readyk(q, node), -tonumber(prio), member) end
end
local allowed = limit
local running = redis.call('ZCARD', qk(q, 'running'))
if ARGV[7] ~= '' then allowed = math.min(allowed, tonumber(ARGV[7]) - running) end
local recent, oldest = 0, ''
if ARGV[8] ~= '' then
  redis.call('ZREMRANGEBYSCORE', qk(q, 'rate'), '-inf', now)
  recent = redis.call('ZCARD', qk(q, 'rate'))
  local first = redis.call('ZRANGE', qk(q, 'rate'), 0, 0, 'WITHSCORES')
  if #first > 0 then oldest = first[2] end
  allowed = math.min(allowed, tonumber(ARGV[8]) - recent)
end
local out = {running, recent, oldest, ''}
local picked = {}
if allowed > 0 and mynode ~= '' then
  for _, m in ipairs(redis.call('ZRANGE', readyk(q, mynode), 0, allowed - 1)) do
    picked[#picked+1] = {readyk(q, mynode), m}
  end
end
if allowed > #picked then
  for _, m in ipairs(redis.call('ZRANGE', qk(q, 'ready'), 0, allowed - #picked - 1)) do
    picked[#picked+1] = {qk(q, 'ready'), m}
  end
end
if #picked > 0 then
  local members, moved, leases, evs, rates, claimed = {}, {}, {}, {}, {}, {}
  for _, pick in ipairs(picked) do
    if not members[pick[1]] then members[pick[1]] = {} end
    local m = members[pick[1]]
    m[#m+1] = pick[2]
  end
  for key, m in pairs(members) do many('ZREM', key, m) end
  local wjson = cjson.encode(worker)
  local slot = lease_slot(lease)
  local first = evids(#picked)
  for i, pick in ipairs(picked) do
    local member = pick[2]
    -- the member is ``RUNAT:SEQ:ID``: two plain finds (a pattern anchored at its end only,
    -- ``[^:]+$``, is tried from every position of the member: ~6 µs a job)
    local c1 = string.find(member, ':', 1, true)
    local c2 = string.find(member, ':', c1 + 1, true)
    local id = string.sub(member, c2 + 1)
    local k = jk(id)
    -- the job read once: its hash as it is, then as the claim leaves it (what it answers)
    local flat, h = redis.call('HGETALL', k), {}
    for j = 1, #flat, 2 do h[flat[j]] = flat[j+1] end
    local attempt = int(tonumber(h.attempt or 0) + 1)
    local fields = {'status', 'running', 'worker_id', worker, 'lease_expires_at', lease, 'started_at', now,
      'attempt', attempt, 'runs', int(tonumber(h.runs or 0) + 1),
      'ver', int(tonumber(h.ver or 0) + 1), 'evs', jobref(h.evs, int(first + i), 'running')}
    if mynode ~= '' and not h.node then
      fields[#fields+1] = 'node'; fields[#fields+1] = mynode
      nj_add(mynode, id)
    end
    redis.call('HSET', k, unpack(fields))
    for j = 1, #fields, 2 do h[fields[j]] = fields[j+1] end
    -- (the store's own fields are not the job's: not answered)
    h.seq, h.member, h.ver, h.evs, h.keyfield, h.jb = nil, nil, nil, nil, nil, nil
    claimed[#claimed+1] = h
    moved[#moved+1] = {id, string.sub(member, c1 + 1, c2 - 1)}
    leases[#leases+1] = slot; leases[#leases+1] = id
    evs[#evs+1] = {id, q, 'running', '{"attempt":' .. attempt .. ',"worker":' .. wjson .. '}'}
  end
  track_many(q, moved, 'queued', 'running')
  many('ZADD', qk(q, 'running'), leases)
  if ARGV[8] ~= '' then
    local last = redis.call('INCRBY', P .. ':ratec', #picked)
    for i = 1, #picked do rates[#rates+1] = ARGV[9]; rates[#rates+1] = last - #picked + i end
    many('ZADD', qk(q, 'rate'), rates)
  end
  events(evs, now, first)
  -- each job's hash in one string, a JSON object of its fields' texts (the client's dict,
  -- decoded in one call): a reply of many short strings costs the server (and the client) far
  -- more per string; cjson writes it in fewer instructions than cmsgpack packs a map, and
  -- orjson reads it in a third of msgpack's time
  for _, h in ipairs(claimed) do out[#out+1] = cjson.encode(h) end
end
local nxt = redis.call('ZRANGE', qk(q, 'delayed'), 0, 0, 'WITHSCORES')
if #nxt > 0 then out[4] = nxt[2] end
return out
"""

# ARGV: prefix, worker, lease_until, then id, token pairs (``rules.holds``). Returns the held ids.
# A renewal bumps ``ver`` like every change: a ``PUT`` computed from the job read before it
# (the sweeper's takeover of a lease it saw expired, a manual retry of a stalled job) is
# refused and decided again on the renewed lease, so a job is never both held and taken.
RENEW = r"""
local worker, lease = ARGV[2], ARGV[3]
local slot = lease_slot(lease)
local held = {}
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i+1]
  if holds(id, worker, token) then
    redis.call('HSET', jk(id), 'lease_expires_at', lease)
    redis.call('HINCRBY', jk(id), 'ver', 1)
    local q = redis.call('HGET', jk(id), 'queue')
    redis.call('ZADD', qk(q, 'running'), slot, id)
    held[#held+1] = id
  end
end
return held
"""

# ARGV: prefix, worker, now, why, then a MessagePack array of [id, token, outputs,
# dead_letters ("" none), step rows of that run ([field, json, status] each, as ``STEPS``
# writes them)]. ``rules.holds`` then ``rules.completed``; a held job's rows are written with
# its outcome (the last of a step's rows winning), a refused job's not at all, and its running
# steps (those given and those written before) are interrupted (``why``). Returns the refused
# ids.
COMPLETE = r"""
local worker, now, why = ARGV[2], ARGV[3], ARGV[4]
local refused, held, byq, done, evs, ids, seen = {}, {}, {}, {}, {}, {}, {}
-- the held jobs first (one completed earlier in the batch is no longer held), then their writes
for _, d in ipairs(cmsgpack.unpack(ARGV[5])) do
  local id, token = d[1], d[2]
  local st, runs, w, q, attempt, node, seq, ver, refs = unpack(redis.call('HMGET', jk(id), 'status', 'runs',
    'worker_id', 'queue', 'attempt', 'node', 'seq', 'ver', 'evs'))
  if not seen[id] and st == 'running' and runs == token and w == worker then  -- (``holds``)
    seen[id] = true
    held[#held+1] = {d, q, attempt, node, seq, ver, refs}
  else
    refused[#refused+1] = id
  end
end
local first = evids(#held)
for i, h in ipairs(held) do
  local d, q, attempt, node, seq, ver, refs = unpack(h, 1, 7)  -- (nil fields: give the length)
  local id, outputs, letters = d[1], d[3], d[4]
  local k = jk(id)
  if node then nj_rem(node, id) end
  ver = int(tonumber(ver or 0) + 1)
  refs = jobref(refs, int(first + i), 'completed')
  if letters ~= '' then
    redis.call('HSET', k, 'status', 'completed', 'outputs', outputs, 'finished_at', now, 'ver', ver,
      'evs', refs, 'dead_letters', letters)
    redis.call('HDEL', k, 'lease_expires_at')
  else
    redis.call('HSET', k, 'status', 'completed', 'outputs', outputs, 'finished_at', now, 'ver', ver,
      'evs', refs)
    redis.call('HDEL', k, 'dead_letters', 'lease_expires_at')
  end
  if not byq[q] then byq[q] = {moved = {}, ids = {}} end
  local g = byq[q]
  g.moved[#g.moved+1] = {id, seq}
  g.ids[#g.ids+1] = id
  done[#done+1] = now; done[#done+1] = id
  evs[#evs+1] = {id, q, 'completed', '{"attempt":' .. attempt .. '}'}
  ids[#ids+1] = id
  local rows = d[5]
  if rows and #rows > 0 then finish_steps(id, rows, now, why, d[2] == '1') else interrupt(id, now, why) end
end
for q, g in pairs(byq) do
  track_many(q, g.moved, 'running', 'completed')
  many('ZREM', qk(q, 'running'), g.ids)
end
many('ZADD', P .. ':done', done)
events(evs, now, first)
-- one message for the batch: the ids, space separated (``RedisBase._listen``)
if #ids > 0 then redis.call('PUBLISH', P .. ':n:done', table.concat(ids, ' ')) end
return refused
"""

# A change computed in Python by a rule, written if the job is unchanged since it was read.
# ARGV: prefix, id, expected ver, now, kind, event data, why (interrupted steps), runkey,
# n_set, n_del, then n_set field/value pairs, then n_del field names, then the journal's
# length ("" unchecked) and a MessagePack array ("" none) of [field, JSON] step rows the
# journal finished, written after the other running steps are interrupted.
# Returns 1, or 0 when the job (or its journal) changed meanwhile (the caller reads it again).
PUT = r"""
local id, ver, now, kind, data, why, runkey = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local nset, ndel = tonumber(ARGV[9]), tonumber(ARGV[10])
local jlen, finished = ARGV[11 + 2 * nset + ndel], ARGV[12 + 2 * nset + ndel]
local k = jk(id)
local st, cur, q, member, seq, oldnode, oldstalls = unpack(redis.call('HMGET', k, 'status', 'ver', 'queue',
  'member', 'seq', 'node', 'stalls'))
if not st or cur ~= ver then return 0 end
if jlen ~= '' and redis.call('LLEN', P .. ':jr:' .. id) ~= tonumber(jlen) then return 0 end
if oldnode and (st == 'queued' or st == 'running') then nj_rem(oldnode, id) end
if st == 'queued' then
  redis.call('ZREM', readyk(q, oldnode), member)
  redis.call('ZREM', qk(q, 'delayed'), id)
elseif st == 'running' then
  redis.call('ZREM', qk(q, 'running'), id)
elseif FIN[st] then
  redis.call('ZREM', P .. ':done', id)
end
local fields = {}
for i = 1, 2 * nset do fields[i] = ARGV[10 + i] end
if nset > 0 then redis.call('HSET', k, unpack(fields)) end
for i = 1, ndel do redis.call('HDEL', k, ARGV[10 + 2 * nset + i]) end
redis.call('HINCRBY', k, 'ver', 1)
local new, prio, run_at, lease, fin, node, stalls = unpack(redis.call('HMGET', k, 'status', 'priority',
  'run_at', 'lease_expires_at', 'finished_at', 'node', 'stalls'))
track(id, q, nil, seq, st, new, run_at, tonumber(stalls or 0) - tonumber(oldstalls or 0))
if node and (new == 'queued' or new == 'running') then nj_add(node, id) end
if new == 'queued' then
  local m = runkey .. ':' .. string.format('%015d', tonumber(seq)) .. ':' .. id
  redis.call('HSET', k, 'member', m)
  if tonumber(run_at) > tonumber(now) then
    redis.call('ZADD', qk(q, 'delayed'), run_at, id)
  else
    redis.call('ZADD', readyk(q, node), -tonumber(prio), m)
  end
  redis.call('PUBLISH', P .. ':n:jobs', q)
elseif new == 'running' then
  redis.call('ZADD', qk(q, 'running'), lease_slot(lease), id)
elseif FIN[new] then
  redis.call('ZADD', P .. ':done', fin, id)
  redis.call('PUBLISH', P .. ':n:done', id)
end
event(id, q, kind, now, data)
if new ~= 'running' then interrupt(id, now, why) end
if finished ~= '' then
  for _, row in ipairs(cmsgpack.unpack(finished)) do
    redis.call('HSET', P .. ':s:' .. id, row[1], row[2])
    redis.call('HDEL', P .. ':sx:' .. id, row[1])
    redis.call('SREM', P .. ':sr:' .. id, row[1])
  end
end
return 1
"""

# ARGV: prefix, node, now. ``rules.reassigned`` of each queued job assigned to the node: back
# to its queue's ready set (a delayed one stays delayed, unassigned). Returns their ids.
REASSIGN = r"""
local node, now = ARGV[2], ARGV[3]
local moved = {}
for _, id in ipairs(redis.call('SMEMBERS', njk(node))) do
  local k = jk(id)
  local st, q, member, prio = unpack(redis.call('HMGET', k, 'status', 'queue', 'member', 'priority'))
  if st == 'queued' then
    if redis.call('ZREM', readyk(q, node), member) == 1 then
      redis.call('ZADD', qk(q, 'ready'), -tonumber(prio), member)
    end
    redis.call('HDEL', k, 'node')
    redis.call('HINCRBY', k, 'ver', 1)
    nj_rem(node, id)
    event(id, q, 'reassigned', now, '{"node":' .. cjson.encode(node) .. '}')
    redis.call('PUBLISH', P .. ':n:jobs', q)
    moved[#moved+1] = id
  elseif st ~= 'running' then
    nj_rem(node, id)
  end
end
return moved
"""
