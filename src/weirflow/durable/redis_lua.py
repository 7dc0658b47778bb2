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
  lease expiry's whole second (``lease_slot``: the candidates of a stall sweep, which reads those
  scored before ``now`` and checks each job's own lease); ``P:q:Q:rate`` zset of claim times;
  ``P:fin:Q`` zset of outcome events;
- ``P:s:ID`` hash step -> step JSON, ``P:sr:ID`` set of running steps, ``P:sx:ID`` hash
  step -> ``{"status": "interrupted", ...}`` (set when the job left ``running``);
- ``P:ev`` zset of event JSON by event id; a job's events as ``ID:KIND`` refs (the event's
  id and kind: its text is in ``P:ev``): those of submit, claim and completion in the job's
  ``evs`` field (space separated: written with the job's other fields), the others in the
  ``P:je:ID`` list (a store an older version wrote holds them all there, or their texts);
- ``P:nj:NODE`` set: the queued and running jobs assigned to ``NODE`` (what its capacity
  counts), kept by every script that changes a job's status or node (``nj_add``/``nj_rem``), and
  ``P:ix:nodes`` set: the nodes whose ``P:nj:NODE`` is not empty (``assigned_nodes``);
- the counts and indexes every script that changes a job's status keeps (``reindex``/``track``), so
  counts and filtered lists read no job they do not answer with: ``P:cnt:Q`` hash status -> jobs of
  queue ``Q`` (and ``stalls`` -> their stalls); zsets by ``seq``: ``P:ix:qs:Q:STATUS`` (but
  ``running``: the running jobs are those of ``P:q:Q:running``, few), ``P:ix:q:Q``, ``P:ix:f:FLOW``
  (``P:flows`` set of flows), so a list by status alone merges the queues' indexes; ``P:q:Q:qat``
  zset of the queue's queued jobs by ``run_at``; ``P:ixv``: their version (missing or older: a
  store an older version wrote, rebuilt once by ``REINDEX``, which drops what it kept);
- ``P:jr:ID`` list: the durable journal; ``P:sched`` hash name -> schedule JSON;
  ``P:paused`` hash queue -> when it was paused;
  ``P:sweeper`` hash: the sweeper lock;
- channels ``P:n:jobs`` (a queue got ready jobs), ``P:n:done`` (jobs finished: their ids, space
  separated), ``P:n:sched`` (a queue's schedules changed).

Numbers that must stay exact (times, floats) are computed in Python and passed as text:
Lua's numbers print with 14 digits. Values Lua needs to compare are parsed with
``tonumber``. The rules a script mirrors (``rules.claimed``, ``rules.holds``...) are
named beside it; the others are applied in Python and written with ``PUT``.

This module holds what every script starts with (``COMMON``); the scripts are in
``redis_lua_jobs`` (a job's lifecycle: submit, claim, renew, complete, ``PUT``, reassign),
``redis_lua_journal`` (the journal and step rows), ``redis_lua_admin`` (pause, events,
sweeper, retention, counts and indexes, schedules) and ``redis_lua_schedules`` (a schedule's
firing), all named here too.
"""

from __future__ import annotations

from .redis_lua_admin import ADD_EVENT, COUNTS, DELETE, PAUSE, REINDEX, SCHEDULE_PUT, SWEEPER
from .redis_lua_jobs import CLAIM, COMPLETE, PUT, REASSIGN, RENEW, SUBMIT
from .redis_lua_journal import APPEND, CLEAR_JOURNAL, STEPS
from .redis_lua_schedules import FIRE

__all__ = [
    "ADD_EVENT",
    "APPEND",
    "CLAIM",
    "CLEAR_JOURNAL",
    "COMMON",
    "COMPLETE",
    "COUNTS",
    "DELETE",
    "FIRE",
    "INDEX_VERSION",
    "PAUSE",
    "PUT",
    "REASSIGN",
    "REINDEX",
    "RENEW",
    "SCHEDULE_PUT",
    "STEPS",
    "SUBMIT",
    "SWEEPER",
]

#: the version of the counts and indexes the scripts keep (``track``): a store whose ``P:ixv``
#: differs is indexed again once (``REINDEX``); "2" added ``P:ix:nodes``; "3" dropped
#: ``P:ix:s:STATUS`` and ``P:ix:qs:Q:running`` (each status change wrote four index entries
#: more for them)
INDEX_VERSION = "3"

# helpers every script starts with; ARGV[1] is always the key prefix
COMMON = (
    f"local IXV = '{INDEX_VERSION}'\n"
    + r"""
local P = ARGV[1]
-- an integer as text: Lua turns a number into text (``tostring``, ``..``, a command's argument)
-- with the C library's floating-point printf, several times the cost of ``%d``
local function int(n) return string.format('%d', n) end
local function jk(id) return P .. ':j:' .. id end
-- a lease's score in ``P:q:Q:running``: its whole second, rounded down (never after the lease:
-- a sweep's candidates include every expired one). A small zset is a listpack, whose scores
-- are text unless whole: every insert into it read each score before with strtod (~1k
-- instructions each, a third of a claim's ``ZADD`` of 64 leases)
local function lease_slot(lease) return int(math.floor(tonumber(lease))) end
local function qk(q, what) return P .. ':q:' .. q .. ':' .. what end
local FIN = {completed = true, failed = true, cancelled = true}
-- the ready set of a queue's unassigned jobs, or of those assigned to ``node``
local function readyk(q, node)
  if node and node ~= '' then return qk(q, 'nr:' .. node) end
  return qk(q, 'ready')
end
local function njk(node) return P .. ':nj:' .. node end
-- a job joins or leaves its node's set; ``P:ix:nodes`` holds the nodes whose set is not empty
local function nj_add(node, id)
  if redis.call('SADD', njk(node), id) == 1 then redis.call('SADD', P .. ':ix:nodes', node) end
end
local function nj_rem(node, id)
  if redis.call('SREM', njk(node), id) == 1 and redis.call('EXISTS', njk(node)) == 0 then
    redis.call('SREM', P .. ':ix:nodes', node)
  end
end

-- the counts and indexes of a job of queue ``q`` (and ``flow``: given when it comes or goes)
-- going from status ``old`` to ``new`` (``nil``: not in the store), ``dstalls`` its stalls' change
local function index_now(id, q, flow, seq, old, new, run_at, dstalls)
  local cnt = P .. ':cnt:' .. q
  if old then
    redis.call('HINCRBY', cnt, old, -1)
    if old ~= 'running' then redis.call('ZREM', P .. ':ix:qs:' .. q .. ':' .. old, id) end
    if old == 'queued' then redis.call('ZREM', qk(q, 'qat'), id) end
  else
    redis.call('SADD', P .. ':flows', flow)
    redis.call('ZADD', P .. ':ix:q:' .. q, seq, id)
    redis.call('ZADD', P .. ':ix:f:' .. flow, seq, id)
  end
  if new then
    redis.call('HINCRBY', cnt, new, 1)
    if new ~= 'running' then redis.call('ZADD', P .. ':ix:qs:' .. q .. ':' .. new, seq, id) end
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

-- ``cmd key ...`` with the items of ``list`` as its last arguments, a chunk at a time (Lua's
-- ``unpack`` has a limit; 4,000 is even, so pairs stay whole)
local function many(cmd, key, list)
  for i = 1, #list, 4000 do redis.call(cmd, key, unpack(list, i, math.min(#list, i + 3999))) end
end
-- ``track`` of the jobs ``moved`` (``{id, seq}`` each) of queue ``q`` from status ``old`` to ``new``
-- (neither ``nil`` nor ``queued``: no flow, ``run_at`` or stalls change): one command per index
-- for them all instead of one per job
local function track_many(q, moved, old, new)
  if indexed == nil then
    indexed = redis.call('GET', P .. ':ixv') == IXV
    reached = tonumber(redis.call('GET', P .. ':ixcur') or '-1')
  end
  local ids, scored = {}, {}
  for _, m in ipairs(moved) do
    if indexed or tonumber(m[2]) <= reached then
      ids[#ids+1] = m[1]
      scored[#scored+1] = m[2]; scored[#scored+1] = m[1]
    end
  end
  if #ids == 0 then return end
  local cnt = P .. ':cnt:' .. q
  redis.call('HINCRBY', cnt, old, -#ids)
  redis.call('HINCRBY', cnt, new, #ids)
  if old ~= 'running' then many('ZREM', P .. ':ix:qs:' .. q .. ':' .. old, ids) end
  if old == 'queued' then many('ZREM', qk(q, 'qat'), ids) end
  if new ~= 'running' then many('ZADD', P .. ':ix:qs:' .. q .. ':' .. new, scored) end
end

-- ``track`` of the new jobs ``made`` (``{id, queue, flow, seq, run_at}`` each, all queued): one
-- command per index for them all (a new store's first jobs are indexed: ``SUBMIT`` sets ``P:ixv``;
-- while ``REINDEX`` runs, new jobs are past what it reached and wait for it)
local function track_new(made)
  if indexed == nil then
    indexed = redis.call('GET', P .. ':ixv') == IXV
    reached = tonumber(redis.call('GET', P .. ':ixcur') or '-1')
  end
  if not indexed then return end
  local byq, byf, flows, all = {}, {}, {}, {}
  for _, m in ipairs(made) do
    local id, q, flow, seq, run_at = m[1], m[2], m[3], m[4], m[5]
    if not byq[q] then byq[q] = {ids = {}, qat = {}}; all[#all+1] = q end
    local g = byq[q]
    g.ids[#g.ids+1] = seq; g.ids[#g.ids+1] = id
    g.qat[#g.qat+1] = run_at; g.qat[#g.qat+1] = id
    if not byf[flow] then byf[flow] = {}; flows[#flows+1] = flow end
    local f = byf[flow]
    f[#f+1] = seq; f[#f+1] = id
  end
  many('SADD', P .. ':flows', flows)
  for flow, f in pairs(byf) do many('ZADD', P .. ':ix:f:' .. flow, f) end
  for q, g in pairs(byq) do
    redis.call('HINCRBY', P .. ':cnt:' .. q, 'queued', #g.ids / 2)
    many('ZADD', P .. ':ix:q:' .. q, g.ids)
    many('ZADD', P .. ':ix:qs:' .. q .. ':queued', g.ids)
    many('ZADD', qk(q, 'qat'), g.qat)
  end
end

-- the first of ``n`` event ids taken (the ids are ``first + 1`` .. ``first + n``)
local function evids(n)
  if n == 0 then return 0 end
  return redis.call('INCRBY', P .. ':evid', n) - n
end
-- ``event`` of each of ``list`` (``{job_id, queue, kind, data}``, all at ``at``), numbered in
-- their order from ``first + 1`` (``evids``): one command per set for them all. The job's
-- own refs (``id:kind``) are the caller's to write: the hot scripts add them to the job's
-- ``evs`` field in the ``HSET`` they make anyway (``jobref``), ``event`` to its ``P:je:ID`` list
local function events(list, at, first)
  if #list == 0 then return end
  local all, fin, names = {}, {}, {}
  for i, e in ipairs(list) do
    local job_id, queue, kind = e[1], e[2], e[3]
    local id = int(first + i)
    if not names[queue] then names[queue] = cjson.encode(queue) end
    if not names[kind] then names[kind] = cjson.encode(kind) end
    local text = '{"id":' .. id .. ',"job_id":' .. cjson.encode(job_id) .. ',"queue":' .. names[queue] ..
      ',"kind":' .. names[kind] .. ',"at":' .. at .. ',"data":' .. e[4] .. '}'
    all[#all+1] = id; all[#all+1] = text
    if kind == 'completed' or kind == 'failed' or kind == 'retrying' then
      if not fin[queue] then fin[queue] = {} end
      local f = fin[queue]
      f[#f+1] = at; f[#f+1] = id .. ':' .. kind
    end
  end
  many('ZADD', P .. ':ev', all)
  for queue, f in pairs(fin) do many('ZADD', P .. ':fin:' .. queue, f) end
end
-- a job's ``evs`` field (its events' refs, space separated: ``old``) with event ``id`` of ``kind``
-- (``id`` text: ``int``)
local function jobref(old, id, kind)
  if old then return old .. ' ' .. id .. ':' .. kind end
  return id .. ':' .. kind
end

local function event(job_id, queue, kind, at, data)
  local id = int(redis.call('INCR', P .. ':evid'))
  local jid = 'null'
  if job_id then jid = cjson.encode(job_id) end
  local text = '{"id":' .. id .. ',"job_id":' .. jid .. ',"queue":' .. cjson.encode(queue) ..
    ',"kind":' .. cjson.encode(kind) .. ',"at":' .. at .. ',"data":' .. data .. '}'
  redis.call('ZADD', P .. ':ev', id, text)
  if job_id then redis.call('RPUSH', P .. ':je:' .. job_id, id .. ':' .. kind) end
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

-- ``STEPS`` of a job's ``rows`` ([field, json, status] each, the last of a step's winning), then
-- ``interrupt``, in fewer commands: the rows written, a finished one's override dropped, and
-- every running step (given, or written before and not finished by one given) interrupted.
-- ``first``: the job's first run (its ``runs`` is 1), which no step override can be left of
-- (``P:sx:ID`` is written only as a job leaves ``running``, and every run after starts with a
-- claim, which counts it in ``runs``): none is dropped
local function finish_steps(id, rows, at, why, first)
  local set, finished, running = {}, {}, {}
  for _, row in ipairs(rows) do
    local f = row[1]
    set[#set+1] = f; set[#set+1] = row[2]
    if row[3] == 'running' then
      running[f], finished[f] = true, nil
    else
      finished[f], running[f] = true, nil
    end
  end
  many('HSET', P .. ':s:' .. id, set)
  local before = redis.call('SMEMBERS', P .. ':sr:' .. id)
  for _, f in ipairs(before) do
    if not finished[f] then running[f] = true end
  end
  local over, text = {}, nil
  for f, _ in pairs(running) do
    if not text then
      text = '{"status":"interrupted","completed_at":' .. at .. ',"error":' .. cjson.encode(why) .. '}'
    end
    over[#over+1] = f; over[#over+1] = text
  end
  if not first then
    local drop = {}
    for f, _ in pairs(finished) do drop[#drop+1] = f end
    many('HDEL', P .. ':sx:' .. id, drop)
  end
  many('HSET', P .. ':sx:' .. id, over)
  if #before > 0 then redis.call('DEL', P .. ':sr:' .. id) end
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
