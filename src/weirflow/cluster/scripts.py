"""The registry's Lua scripts: each write is one script, atomic on the server.

Every write script, in one step: checks what it must (before touching anything, so
an error leaves no half-write), bumps the global revision with ``INCR``, writes the
node's hash, and appends the node's full new record to the change log with the
revision as the entry id (``XADD log MAXLEN ~ N <rev>-0 ...``). Entry ids are thus
exactly the revisions 1, 2, 3, ... with no gap, which is how a follower tells a
trimmed log (its next entry is not ``last + 1``) from a quiet one.

Live nodes carry no Redis TTL: their expiry is a score in ``expiry`` (Redis time,
with jitter the caller adds), and ``SWEEP`` turns due nodes into tombstones with a
revision and a log entry like any other write. A key expiring by itself would vanish
without a revision or an event (the bug of the design we replace), and keyspace
notifications are fire-and-forget (lost while a registry is disconnected) and fire
when Redis gets round to deleting the key, so they are not used at all. Tombstones
do carry a TTL (``PEXPIRE``, jittered): once the log has moved past them nobody needs
them, and the list script forgets ids whose hash has gone.

KEYS (every script): revision, log, expiry, ids, epoch. ARGV[1] is the node-key prefix,
ARGV[2] the log's approximate MAXLEN, ARGV[3] an epoch to use if the data set has none (fresh
at every call: a registry that passed the epoch it knows would recreate it after a loss).
"""

from __future__ import annotations

_PRELUDE = """
local rev_key, log_key, exp_key, ids_key, epoch_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix, maxlen = ARGV[1], ARGV[2]
-- the data set's identity: made by the first script to run on an empty data set; a
-- registry that sees another epoch than the one it listed knows Redis lost its data
redis.call('SET', epoch_key, ARGV[3], 'NX')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function flat(key)
  return redis.call('HGETALL', key)
end

local function append(op, rev, record)
  redis.call('XADD', log_key, 'MAXLEN', '~', maxlen, rev .. '-0', 'op', op, unpack(record))
end

local function tombstone(id, op, tomb_ms)
  local key = prefix .. id
  local rev = redis.call('INCR', rev_key)
  redis.call('HSET', key, 'state', 'down', 'revision', rev, 'running', 0)
  redis.call('PEXPIRE', key, tomb_ms)
  redis.call('ZREM', exp_key, id)
  local record = flat(key)
  append(op, rev, record)
  return record
end

-- the fields of the log entry at revision rev (empty if the log has none): what a registry
-- compares with the entry it applied there, to tell a revision reused after a loss
local function entry_at(rev)
  if rev < 1 then
    return {}
  end
  local found = redis.call('XRANGE', log_key, rev .. '-0', rev .. '-0')
  if #found == 0 then
    return {}
  end
  return found[1][2]
end

-- a live node whose expiry is due is expired now, whoever asks
local function live(id, tomb_ms)
  local key = prefix .. id
  local state = redis.call('HGET', key, 'state')
  if not state or state == 'down' then
    return false
  end
  local due = redis.call('ZSCORE', exp_key, id)
  if due and tonumber(due) <= now then
    tombstone(id, 'expire', tomb_ms)
    return false
  end
  return true
end
"""

# ARGV: prefix, maxlen, epoch, id, pool, labels (JSON), capacity, running, address, ttl_ms, expire_in_ms
REGISTER = (
    _PRELUDE
    + """
local id = ARGV[4]
local key = prefix .. id
local rev = redis.call('INCR', rev_key)
local record = {'id', id, 'pool', ARGV[5], 'labels', ARGV[6], 'capacity', ARGV[7],
  'running', ARGV[8], 'address', ARGV[9], 'state', 'up', 'revision', tostring(rev),
  'heartbeat_at', tostring(now), 'ttl_ms', ARGV[10]}
redis.call('DEL', key)
redis.call('HSET', key, unpack(record))
redis.call('ZADD', exp_key, now + tonumber(ARGV[11]), id)
redis.call('SADD', ids_key, id)
append('register', rev, record)
return record
"""
)

# ARGV: prefix, maxlen, epoch, id, running, capacity ('' keeps it), expire_in_ms, tomb_ms
HEARTBEAT = (
    _PRELUDE
    + """
local id = ARGV[4]
if not live(id, ARGV[8]) then
  return false
end
local key = prefix .. id
local rev = redis.call('INCR', rev_key)
redis.call('HSET', key, 'running', ARGV[5], 'revision', rev, 'heartbeat_at', now)
if ARGV[6] ~= '' then
  redis.call('HSET', key, 'capacity', ARGV[6])
end
redis.call('ZADD', exp_key, now + tonumber(ARGV[7]), id)
local record = flat(key)
append('heartbeat', rev, record)
return record
"""
)

# ARGV: prefix, maxlen, epoch, id, tomb_ms
DRAIN = (
    _PRELUDE
    + """
local id = ARGV[4]
if not live(id, ARGV[5]) then
  return false
end
local key = prefix .. id
local rev = redis.call('INCR', rev_key)
redis.call('HSET', key, 'state', 'draining', 'revision', rev)
local record = flat(key)
append('drain', rev, record)
return record
"""
)

# ARGV: prefix, maxlen, epoch, id, tomb_ms
REMOVE = (
    _PRELUDE
    + """
local id = ARGV[4]
if not live(id, ARGV[5]) then
  return false
end
return tombstone(id, 'remove', ARGV[5])
"""
)

# Expire what is due (at most ARGV[5] nodes a call) and report where the server is:
# {revision, first log entry's revision (0: empty log), nodes expired now, epoch, the
# fields of the log entry at revision ARGV[6] (the caller's; empty if there is none)}.
# Run by every registry as its liveness probe; tombstoning twice is impossible
# because the ZREM and the state check happen in the same atomic step.
# ARGV: prefix, maxlen, epoch, tomb_ms, limit, revision
SWEEP = (
    _PRELUDE
    + """
local due = redis.call('ZRANGEBYSCORE', exp_key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
local expired = 0
for _, id in ipairs(due) do
  local state = redis.call('HGET', prefix .. id, 'state')
  if state and state ~= 'down' then
    tombstone(id, 'expire', ARGV[4])
    expired = expired + 1
  else
    redis.call('ZREM', exp_key, id)
  end
end
local first = redis.call('XRANGE', log_key, '-', '+', 'COUNT', 1)
local first_rev = 0
if #first > 0 then
  first_rev = tonumber(string.match(first[1][1], '^(%d+)'))
end
return {tonumber(redis.call('GET', rev_key) or '0'), first_rev, expired, redis.call('GET', epoch_key),
  entry_at(tonumber(ARGV[6]))}
"""
)

# Every record (live and tombstone) with the revision they are at, in one atomic step:
# {revision, epoch, the fields of the log entry at that revision, record, record, ...}.
# Forgets ids whose tombstone has expired.
# ARGV: prefix, maxlen, epoch
LIST = (
    _PRELUDE
    + """
local rev = tonumber(redis.call('GET', rev_key) or '0')
local out = {rev, redis.call('GET', epoch_key), entry_at(rev)}
for _, id in ipairs(redis.call('SMEMBERS', ids_key)) do
  local record = flat(prefix .. id)
  if #record == 0 then
    redis.call('SREM', ids_key, id)
  else
    out[#out + 1] = record
  end
end
return out
"""
)

# One node's record, or false. ARGV: prefix, maxlen, epoch, id
GET = (
    _PRELUDE
    + """
local record = flat(prefix .. ARGV[4])
if #record == 0 then
  return false
end
return record
"""
)
