"""The Redis store's scripts of a running job's durable journal and its step rows, both
fenced by the job's run token (``rules.runs_under``).

Each runs after ``redis_lua.COMMON`` (key layout and helpers there).
"""

from __future__ import annotations

# ARGV: prefix, fenced ("1": tokens given), then a MessagePack array of [id, token (""
# unfenced), record, batch number ("" none)]. Fenced: a job's rows are written only while it
# runs under its token (``rules.runs_under``), and, resent ("1" after the rows), not when its
# last batch (job field ``jb``: "token:number") is of that token and numbered as high (a
# batch sent again); unfenced: when jobs are not in the store, nothing is written and the
# answer is {{their ids}} (one nested array: the client refuses the batch). Returns the
# refused ids.
APPEND = r"""
local fenced = ARGV[2] == '1'
local rows = cmsgpack.unpack(ARGV[3])
local resent = ARGV[4] == '1'

local refused, seen, missing = {}, {}, {}
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
      if not seen[id] then missing[#missing+1] = id end
    end
  end
end
if #missing > 0 then return {missing} end
for _, row in ipairs(rows) do
  if seen[row[1]] then redis.call('RPUSH', P .. ':jr:' .. row[1], row[3]) end
end
return refused
"""

# ARGV: prefix, id, token ("" none). Returns 0 when refused (not running under token).
CLEAR_JOURNAL = r"""
if ARGV[3] ~= '' and not runs_under(ARGV[2], ARGV[3]) then return 0 end
redis.call('DEL', P .. ':jr:' .. ARGV[2])
-- the from-start retry is consumed with its journal: a later takeover resumes the new run's journal
if redis.call('HGET', jk(ARGV[2]), 'from_start') == '1' then
  redis.call('HSET', jk(ARGV[2]), 'from_start', '0')
  redis.call('HINCRBY', jk(ARGV[2]), 'ver', 1)
end
return 1
"""

# ARGV: prefix, then a MessagePack array of [id, run, field, json, status]
# (``rules.runs_under``). Returns the refused ids.
STEPS = r"""
local refused, held, order, rows = {}, {}, {}, {}
for _, step in ipairs(cmsgpack.unpack(ARGV[2])) do
  local id, run, f = step[1], step[2], step[3]
  local key = id .. ':' .. run
  if held[key] == nil then held[key] = runs_under(id, run) end
  if held[key] then
    -- a job's rows are written together, the last of a step's rows in the batch winning
    if not rows[id] then rows[id] = {fields = {}, by = {}}; order[#order+1] = id end
    local r = rows[id]
    if not r.by[f] then r.fields[#r.fields+1] = f end
    r.by[f] = step
  else
    refused[#refused+1] = id
  end
end
for _, id in ipairs(order) do
  local r = rows[id]
  local set, running, other = {}, {}, {}
  for _, f in ipairs(r.fields) do
    local step = r.by[f]
    set[#set+1] = f; set[#set+1] = step[4]
    if step[5] == 'running' then running[#running+1] = f else other[#other+1] = f end
  end
  many('HSET', P .. ':s:' .. id, set)
  many('HDEL', P .. ':sx:' .. id, r.fields)
  many('SADD', P .. ':sr:' .. id, running)
  many('SREM', P .. ':sr:' .. id, other)
end
return refused
"""
