"""The Redis store's Lua scripts: every state change is one script, so it is atomic.

Key layout (``P`` is the store's prefix, ``weirflow`` unless given):

- ``P:j:ID`` hash: the job's fields (``redis_codec``), with ``seq`` (submit order),
  ``member`` (its place in the ready set), ``ver`` (bumped by every change: the
  compare-and-set of ``PUT``) and ``keyfield`` (its idempotency key, if any);
- ``P:jobs`` zset of every job by ``seq``; ``P:keys`` hash idempotency key -> job id;
  ``P:queues`` set of queue names; ``P:done`` zset of finished jobs by ``finished_at``;
- per queue ``Q``: ``P:q:Q:ready`` zset scored ``-priority`` whose members
  ``RUNAT:SEQ:ID`` sort by ``run_at`` then submit order within a priority;
  ``P:q:Q:nr:NODE`` the same for the due jobs assigned to node ``NODE`` (the ready set holds
  only unassigned ones); ``P:q:Q:delayed`` zset by ``run_at`` (jobs not due yet); ``P:q:Q:running`` zset by
  lease expiry; ``P:q:Q:rate`` zset of claim times; ``P:fin:Q`` zset of outcome events;
- ``P:s:ID`` hash step -> step JSON, ``P:sr:ID`` set of running steps, ``P:sx:ID`` hash
  step -> ``{"status": "interrupted", ...}`` (set when the job left ``running``);
- ``P:ev`` zset of event JSON by event id, ``P:je:ID`` list of a job's events;
- ``P:nj:NODE`` set: the queued and running jobs assigned to ``NODE`` (what its capacity
  counts), kept by every script that changes a job's status or node;
- the counts and indexes every script that changes a job's status keeps (``reindex``/``track``), so
  counts and filtered lists read no job they do not answer with: ``P:cnt:Q`` hash status -> jobs of
  queue ``Q`` (and ``stalls`` -> their stalls); zsets by ``seq``: ``P:ix:s:STATUS``,
  ``P:ix:qs:Q:STATUS``, ``P:ix:q:Q``, ``P:ix:f:FLOW`` (``P:flows`` set of flows); ``P:q:Q:qat`` zset
  of the queue's queued jobs by ``run_at``; ``P:ixv``: their version (missing: a store an older
  version wrote, rebuilt once by ``REINDEX``);
- ``P:jr:ID`` list: the durable journal; ``P:sched`` hash name -> schedule JSON;
  ``P:paused`` hash queue -> when it was paused;
  ``P:sweeper`` hash: the sweeper lock;
- channels ``P:n:jobs`` (a queue got ready jobs), ``P:n:done`` (a job finished),
  ``P:n:sched`` (a queue's schedules changed).

Numbers that must stay exact (times, floats) are computed in Python and passed as text:
Lua's numbers print with 14 digits. Values Lua needs to compare are parsed with
``tonumber``. The rules a script mirrors (``rules.claimed``, ``rules.holds``...) are
named beside it; the others are applied in Python and written with ``PUT``.
"""

from __future__ import annotations

#: the version of the counts and indexes the scripts keep (``track``): a store whose ``P:ixv``
#: differs is indexed again once (``REINDEX``)
INDEX_VERSION = "1"

# helpers every script starts with; ARGV[1] is always the key prefix
COMMON = (
    f"local IXV = '{INDEX_VERSION}'\n"
    + r"""
local P = ARGV[1]
local function jk(id) return P .. ':j:' .. id end
local function qk(q, what) return P .. ':q:' .. q .. ':' .. what end
local FIN = {completed = true, failed = true, cancelled = true}
-- the ready set of a queue's unassigned jobs, or of those assigned to ``node``
local function readyk(q, node)
  if node and node ~= '' then return qk(q, 'nr:' .. node) end
  return qk(q, 'ready')
end
local function njk(node) return P .. ':nj:' .. node end

-- the counts and indexes of a job of queue ``q`` (and ``flow``: given when it comes or goes)
-- going from status ``old`` to ``new`` (``nil``: not in the store), ``dstalls`` its stalls' change
local function index_now(id, q, flow, seq, old, new, run_at, dstalls)
  local cnt = P .. ':cnt:' .. q
  if old then
    redis.call('HINCRBY', cnt, old, -1)
    redis.call('ZREM', P .. ':ix:s:' .. old, id)
    redis.call('ZREM', P .. ':ix:qs:' .. q .. ':' .. old, id)
    if old == 'queued' then redis.call('ZREM', qk(q, 'qat'), id) end
  else
    redis.call('SADD', P .. ':flows', flow)
    redis.call('ZADD', P .. ':ix:q:' .. q, seq, id)
    redis.call('ZADD', P .. ':ix:f:' .. flow, seq, id)
  end
  if new then
    redis.call('HINCRBY', cnt, new, 1)
    redis.call('ZADD', P .. ':ix:s:' .. new, seq, id)
    redis.call('ZADD', P .. ':ix:qs:' .. q .. ':' .. new, seq, id)
    if new == 'queued' then redis.call('ZADD', qk(q, 'qat'), run_at, id) end
  else
    redis.call('ZREM', P .. ':ix:q:' .. q, id)
    redis.call('ZREM', P .. ':ix:f:' .. flow, id)
  end
  if dstalls ~= 0 then redis.call('HINCRBY', cnt, 'stalls', dstalls) end
end
-- ``index_now`` once the store is indexed; while ``REINDEX`` runs (``P:ixcur``: the ``seq``
-- it reached), only for the jobs it did (it does the others as they are when it gets there)
-- (read once per script: only REINDEX, which does not track, and a new store's first SUBMIT,
-- before it tracks, change them)
local indexed, reached = nil, nil
local function track(id, q, flow, seq, old, new, run_at, dstalls)
  if indexed == nil then
    indexed = redis.call('GET', P .. ':ixv') == IXV
    reached = tonumber(redis.call('GET', P .. ':ixcur') or '-1')
  end
  if not indexed and tonumber(seq) > reached then return end
  index_now(id, q, flow, seq, old, new, run_at, dstalls)
end

local function event(job_id, queue, kind, at, data)
  local id = redis.call('INCR', P .. ':evid')
  local jid = 'null'
  if job_id then jid = cjson.encode(job_id) end
  local text = '{"id":' .. id .. ',"job_id":' .. jid .. ',"queue":' .. cjson.encode(queue) ..
    ',"kind":' .. cjson.encode(kind) .. ',"at":' .. at .. ',"data":' .. data .. '}'
  redis.call('ZADD', P .. ':ev', id, text)
  if job_id then redis.call('RPUSH', P .. ':je:' .. job_id, text) end
  if kind == 'completed' or kind == 'failed' or kind == 'retrying' then
    redis.call('ZADD', P .. ':fin:' .. queue, at, id .. ':' .. kind)
  end
end

local function interrupt(id, at, why)
  local running = redis.call('SMEMBERS', P .. ':sr:' .. id)
  if #running > 0 then
    local text = '{"status":"interrupted","completed_at":' .. at .. ',"error":' .. cjson.encode(why) .. '}'
    for _, f in ipairs(running) do redis.call('HSET', P .. ':sx:' .. id, f, text) end
    redis.call('DEL', P .. ':sr:' .. id)
  end
end

-- is the job running under this token (``rules.runs_under``), and held by worker (``rules.holds``)
local function runs_under(id, token)
  local st, runs = unpack(redis.call('HMGET', jk(id), 'status', 'runs'))
  return st == 'running' and runs == token
end
local function holds(id, worker, token)
  local st, runs, w = unpack(redis.call('HMGET', jk(id), 'status', 'runs', 'worker_id'))
  return st == 'running' and runs == token and w == worker
end
"""
)

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
for _, job in ipairs(jobs) do
  local id, keyfield, q, prio, run_at, runkey, delayed, data, fields, node =
    job[1], job[2], job[3], job[4], job[5], job[6], job[7], job[8], job[9], job[10]
  local held = false
  if keyfield ~= '' then held = redis.call('HGET', P .. ':keys', keyfield) end
  if held and held ~= id then
    out[#out+1] = held; out[#out+1] = 0
  elseif redis.call('EXISTS', jk(id)) == 1 then  -- (its key held by this very job: made by this call)
    out[#out+1] = id; out[#out+1] = 1
  else
    local seq = redis.call('INCR', P .. ':seq')
    local member = runkey .. ':' .. string.format('%015d', seq) .. ':' .. id
    redis.call('HSET', jk(id), 'seq', seq, 'member', member, 'ver', 0, unpack(fields))
    if keyfield ~= '' then
      redis.call('HSET', jk(id), 'keyfield', keyfield)
      redis.call('HSET', P .. ':keys', keyfield, id)
    end
    redis.call('ZADD', P .. ':jobs', seq, id)
    redis.call('SADD', P .. ':queues', q)
    track(id, q, job[12], seq, nil, 'queued', run_at, 0)
    if delayed == '1' then
      redis.call('ZADD', qk(q, 'delayed'), run_at, id)
    else
      redis.call('ZADD', readyk(q, node), -tonumber(prio), member)
    end
    if node ~= '' then redis.call('SADD', njk(node), id) end
    event(id, q, 'queued', now, data)
    woken[q] = true
    out[#out+1] = id; out[#out+1] = 1
  end
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
# Returns {running, recent, oldest or "", next delayed run_at or "", job hashes...}.
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
  for _, pick in ipairs(picked) do
    local member = pick[2]
    local id = string.match(member, '[^:]+$')
    redis.call('ZREM', pick[1], member)
    local k = jk(id)
    if mynode ~= '' and not redis.call('HGET', k, 'node') then
      redis.call('HSET', k, 'node', mynode)
      redis.call('SADD', njk(mynode), id)
    end
    local attempt = redis.call('HINCRBY', k, 'attempt', 1)
    track(id, q, nil, string.match(member, ':(%d+):[^:]+$'), 'queued', 'running', nil, 0)
    redis.call('HINCRBY', k, 'runs', 1)
    redis.call('HINCRBY', k, 'ver', 1)
    redis.call('HSET', k, 'status', 'running', 'worker_id', worker,
      'lease_expires_at', lease, 'started_at', now)
    redis.call('ZADD', qk(q, 'running'), lease, id)
    if ARGV[8] ~= '' then
      local n = redis.call('INCR', P .. ':ratec')
      redis.call('ZADD', qk(q, 'rate'), ARGV[9], n)
    end
    event(id, q, 'running', now, '{"attempt":' .. attempt .. ',"worker":' .. cjson.encode(worker) .. '}')
    out[#out+1] = redis.call('HGETALL', k)
  end
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
local held = {}
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i+1]
  if holds(id, worker, token) then
    redis.call('HSET', jk(id), 'lease_expires_at', lease)
    redis.call('HINCRBY', jk(id), 'ver', 1)
    local q = redis.call('HGET', jk(id), 'queue')
    redis.call('ZADD', qk(q, 'running'), lease, id)
    held[#held+1] = id
  end
end
return held
"""

# ARGV: prefix, worker, now, why, then a MessagePack array of [id, token, outputs,
# dead_letters ("" none)]. ``rules.holds`` then ``rules.completed``. Returns the refused ids.
COMPLETE = r"""
local worker, now, why = ARGV[2], ARGV[3], ARGV[4]
local refused = {}
for _, d in ipairs(cmsgpack.unpack(ARGV[5])) do
  local id, token, outputs, letters = d[1], d[2], d[3], d[4]
  if holds(id, worker, token) then
    local k = jk(id)
    local q, attempt, node, seq = unpack(redis.call('HMGET', k, 'queue', 'attempt', 'node', 'seq'))
    if node then redis.call('SREM', njk(node), id) end
    track(id, q, nil, seq, 'running', 'completed', nil, 0)
    redis.call('HSET', k, 'status', 'completed', 'outputs', outputs, 'finished_at', now)
    if letters ~= '' then
      redis.call('HSET', k, 'dead_letters', letters)
    else
      redis.call('HDEL', k, 'dead_letters')
    end
    redis.call('HDEL', k, 'lease_expires_at')
    redis.call('HINCRBY', k, 'ver', 1)
    redis.call('ZREM', qk(q, 'running'), id)
    redis.call('ZADD', P .. ':done', now, id)
    event(id, q, 'completed', now, '{"attempt":' .. attempt .. '}')
    interrupt(id, now, why)
    redis.call('PUBLISH', P .. ':n:done', id)
  else
    refused[#refused+1] = id
  end
end
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
if oldnode and (st == 'queued' or st == 'running') then redis.call('SREM', njk(oldnode), id) end
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
if node and (new == 'queued' or new == 'running') then redis.call('SADD', njk(node), id) end
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
  redis.call('ZADD', qk(q, 'running'), lease, id)
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
    redis.call('SREM', njk(node), id)
    event(id, q, 'reassigned', now, '{"node":' .. cjson.encode(node) .. '}')
    redis.call('PUBLISH', P .. ':n:jobs', q)
    moved[#moved+1] = id
  elseif st ~= 'running' then
    redis.call('SREM', njk(node), id)
  end
end
return moved
"""

# ARGV: prefix, fenced ("1": tokens given), then a MessagePack array of [id, token (""
# unfenced), record, batch number ("" none)]. Fenced: a job's rows are written only while it
# runs under its token (``rules.runs_under``), and, resent ("1" after the rows), not when its
# last batch (job field ``jb``: "token:number") is of that token and numbered as high (a
# batch sent again); unfenced: a job not in the store fails the whole batch. Returns the
# refused ids.
APPEND = r"""
local fenced = ARGV[2] == '1'
local rows = cmsgpack.unpack(ARGV[3])
local resent = ARGV[4] == '1'

local refused, seen = {}, {}
for _, row in ipairs(rows) do
  local id, token, batch = row[1], row[2], row[4]
  if seen[id] == nil then
    if fenced then
      seen[id] = runs_under(id, token)
      if not seen[id] then
        refused[#refused+1] = id
      elseif batch ~= '' then
        -- the job's last batch (jb: "token:number"): resent, one held already is skipped
        if resent then
          local last = redis.call('HGET', jk(id), 'jb')
          if last then
            local t, n = string.match(last, '^(.*):(%d+)$')
            if t == token and tonumber(n) >= tonumber(batch) then seen[id] = false end
          end
        end
        if seen[id] then redis.call('HSET', jk(id), 'jb', token .. ':' .. batch) end
      end
    else
      seen[id] = redis.call('EXISTS', jk(id)) == 1
      if not seen[id] then return {err = 'journal records for jobs not in the store: ' .. id} end
    end
  end
end
for _, row in ipairs(rows) do
  if seen[row[1]] then redis.call('RPUSH', P .. ':jr:' .. row[1], row[3]) end
end
return refused
"""

# ARGV: prefix, id, token ("" none). Returns 0 when refused (not running under token).
CLEAR_JOURNAL = r"""
if ARGV[3] ~= '' and not runs_under(ARGV[2], ARGV[3]) then return 0 end
redis.call('DEL', P .. ':jr:' .. ARGV[2])
return 1
"""

# ARGV: prefix, then a MessagePack array of [id, run, field, json, status]
# (``rules.runs_under``). Returns the refused ids.
STEPS = r"""
local refused = {}
for _, step in ipairs(cmsgpack.unpack(ARGV[2])) do
  local id, run, f, text, st = step[1], step[2], step[3], step[4], step[5]
  if runs_under(id, run) then
    redis.call('HSET', P .. ':s:' .. id, f, text)
    redis.call('HDEL', P .. ':sx:' .. id, f)
    if st == 'running' then
      redis.call('SADD', P .. ':sr:' .. id, f)
    else
      redis.call('SREM', P .. ':sr:' .. id, f)
    end
  else
    refused[#refused+1] = id
  end
end
return refused
"""

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
# with its steps, events and journal (``rules.expired_ids`` chose them). Returns the count.
DELETE = r"""
local n = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local k = jk(id)
  local st, fin, keyfield, q, seq, flow, stalls = unpack(redis.call('HMGET', k, 'status', 'finished_at',
    'keyfield', 'queue', 'seq', 'flow', 'stalls'))
  if st and FIN[st] and fin == ARGV[i+1] then
    track(id, q, flow, seq, st, nil, nil, -tonumber(stalls or 0))
    for _, text in ipairs(redis.call('LRANGE', P .. ':je:' .. id, 0, -1)) do
      redis.call('ZREM', P .. ':ev', text)
      local e = cjson.decode(text)
      redis.call('ZREM', P .. ':fin:' .. q, e['id'] .. ':' .. e['kind'])
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
# left untouched.
REINDEX = r"""
if redis.call('GET', P .. ':ixv') == IXV then return 0 end
local statuses = {'queued', 'running', 'completed', 'failed', 'cancelled'}
local cur = redis.call('GET', P .. ':ixcur')
if not cur then
  local queues = redis.call('SMEMBERS', P .. ':queues')
  if #queues == 0 and redis.call('EXISTS', P .. ':jobs') == 0 then return 0 end
  for _, st in ipairs(statuses) do redis.call('DEL', P .. ':ix:s:' .. st) end
  for _, q in ipairs(queues) do
    redis.call('DEL', P .. ':cnt:' .. q, P .. ':ix:q:' .. q, qk(q, 'qat'))
    for _, st in ipairs(statuses) do redis.call('DEL', P .. ':ix:qs:' .. q .. ':' .. st) end
  end
  for _, f in ipairs(redis.call('SMEMBERS', P .. ':flows')) do redis.call('DEL', P .. ':ix:f:' .. f) end
  cur = '0'
end
local chunk = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', P .. ':jobs', '(' .. cur, '+inf', 'WITHSCORES', 'LIMIT', 0, chunk)
for i = 1, #ids, 2 do
  local id = ids[i]
  local st, q, seq, flow, run_at, stalls = unpack(redis.call('HMGET', jk(id), 'status', 'queue', 'seq',
    'flow', 'run_at', 'stalls'))
  if st then
    redis.call('SADD', P .. ':queues', q)
    index_now(id, q, flow, seq, nil, st, run_at, tonumber(stalls or 0))
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
