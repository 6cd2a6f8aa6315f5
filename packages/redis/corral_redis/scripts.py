"""The Lua scripts: every change to the queue is one of them, so no crash lands half-way.

Redis runs a script atomically, and an AOF replay after a crash replays it whole or not at all.
Each script is also safe to run twice, because redis-py re-sends a command whose reply was lost
to a dropped connection (see connect()): a repeated submit or finish recognises what it already
wrote and answers as the first run did; a repeated renew or recover does no harm; a repeated
release answers False although the job is back in line; a repeated claim leaves one job leased
to nobody, which recovery re-queues (one attempt counted) when the lease runs out, and a
repeated BLMOVE leaves an id in `processing` that recovery puts back uncounted.

Scripts touch job hashes they did not get in KEYS (recovery finds its ids in the leases ZSET).
That is sound on Redis Cluster only because every key shares the prefix's hash tag: all of them
live in the slot of the KEYS the script was routed by.

One clock: every lease deadline, duty expiry and heartbeat expiry is Redis' own `TIME`
(microseconds since the epoch) plus a duration in ARGV, and every expiry is judged against
`TIME` too. No host's wall clock reaches a deadline, so a worker whose clock is skewed or steps
neither loses its jobs nor keeps a dead worker's. Only the timestamps shown to users
(started_at, finished_at, as msgspec JSON) come in from the caller's Clock. A script that reads
TIME and then writes is sound since Redis 7 replicates scripts by their effects (the ZADD with
the computed score reaches the AOF and replicas, never the TIME call). Moving a restored Redis
to a host whose clock is far off moves every deadline with it: keep Redis hosts on NTP.

The lifecycle the scripts move jobs through is core's (corral_core.job.ALLOWED): the status
names come from its JobStatus, and tests/contract/test_redis.py drives every move a script
makes and checks that core allows it.
"""

from __future__ import annotations

from corral_core.job import JobStatus
from corral_redis.records import FIELDS, MAX_ANNOUNCED_VIEW_BYTES, PROGRESS, VIEW_FIELDS

# Core's status names as Lua locals (PENDING = 'PENDING', ...), prepended to every script that
# reads or writes a status, so no script spells one itself.
_STATUSES = "".join(f"local {status.name} = '{status.value}'\n" for status in JobStatus)

# Shared helpers, prepended to the scripts that write a job's changing fields. Those come as
# one ARGV value per PROGRESS field from `first` on, in PROGRESS order
# (records.progress_fields); '' is unset.
_WRITE_PROGRESS = (
    "local PROGRESS = {"
    + ", ".join(f"'{field}'" for field in PROGRESS)
    + """}

local function write_progress(job, first)
  local set, unset = {}, {}
  for i, name in ipairs(PROGRESS) do
    local value = ARGV[first + i - 1]
    if value == '' then
      table.insert(unset, name)
    else
      table.insert(set, name)
      table.insert(set, value)
    end
  end
  if #unset > 0 then redis.call('HDEL', job, unpack(unset)) end
  redis.call('HSET', job, unpack(set))
end

local function holds_progress(job, first)
  local stored = redis.call('HMGET', job, unpack(PROGRESS))
  for i = 1, #PROGRESS do
    if (stored[i] or '') ~= ARGV[first + i - 1] then return false end
  end
  return true
end
"""
)

# Redis' clock in microseconds, as a string: a Lua number formats with 14 digits only, which
# would round a score of 16.
_NOW = """
local function now_us()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

local function micros(value)
  return string.format('%d', value)
end
"""

_RECORD = "redis.call('HMGET', job, " + ", ".join(f"'{f}'" for f in FIELDS) + ")"

# Jobs wait in lines per language (`pending:<language>`, see queue.py), each with a LIST of
# wake-up tokens beside it (`<line>:wake`, one per job put in line) that idle workers BLPOP on.
# A job put in line notes when (`queued`: microseconds since the epoch, a space, the time as its
# JSON), for the claim that waited for it (START).
# A job remembers its language's line in its hash (`line`).
# A job with an owner waits in its owner's line of that language (`own`, QueueKeys.owner_line);
# one without waits in the language's line itself. `<line>:turns` lists the language's lines
# that have jobs waiting, owners' and its own, each once, the next one to serve on the left.
_LINES = """
local function in_turn(line, own)
  local turns = line .. ':turns'
  if not redis.call('LPOS', turns, own) then redis.call('RPUSH', turns, own) end
end

local function put_back(job, id, at_head, queued)
  redis.call('HSET', job, 'queued', queued)
  local line = redis.call('HGET', job, 'line')
  local own = redis.call('HGET', job, 'own') or line
  if at_head then redis.call('LPUSH', own, id) else redis.call('RPUSH', own, id) end
  in_turn(line, own)
  redis.call('RPUSH', line .. ':wake', 1)
end

-- The jobs waiting in a language: in its own line and in its owners'.
local function waiting(line)
  local count = redis.call('LLEN', line)
  for _, own in ipairs(redis.call('LRANGE', line .. ':turns', 0, -1)) do
    if own ~= line then count = count + redis.call('LLEN', own) end
  end
  return count
end
"""

# KEYS: job, the language's line, processing, lines SET, reserved, the owner's line in that
# language (the language's line for a job without an owner)
# ARGV: max_unfinished, job id, spec, head, reserve, ceiling, the usage ledger of the job's owner
# ('' for none; corral_redis.apikeys), which FINISH settles, then the progress values, and last the
# job's `queued` (its created_at)
# -> 1 accepted, 0 queue full, -1 another job has this id, -2 no room for its bytes
# The ceiling is in bytes; 0 means 80% of Redis' maxmemory, none when Redis has no maxmemory.
SUBMIT = (
    _WRITE_PROGRESS
    + _LINES
    + """
local job, line, processing, lines = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local reserved, own = KEYS[5], KEYS[6]
if redis.call('EXISTS', job) == 1 then
  -- A submit re-sent after its reply was lost finds its own record: it was accepted.
  if redis.call('HGET', job, 'spec') == ARGV[3] then return 1 end
  return -1
end
local unfinished = redis.call('LLEN', processing)
for _, other in ipairs(redis.call('SMEMBERS', lines)) do
  unfinished = unfinished + waiting(other)
end
if unfinished >= tonumber(ARGV[1]) then
  return 0
end
local reserve, ceiling = tonumber(ARGV[5]), tonumber(ARGV[6])
local memory = redis.call('INFO', 'memory')
if ceiling == 0 then
  ceiling = math.floor(tonumber(string.match(memory, '\\nmaxmemory:(%d+)')) * 0.8)
end
if ceiling > 0 then
  local used = tonumber(string.match(memory, 'used_memory:(%d+)'))
  local held = tonumber(redis.call('GET', reserved) or '0')
  if used + held + #ARGV[3] + #ARGV[4] + reserve > ceiling then return -2 end
end
local fields = {'spec', ARGV[3], 'head', ARGV[4], 'reserve', reserve, 'fence', 0, 'line', line, 'queued', ARGV[#ARGV]}
if own ~= line then table.insert(fields, 'own'); table.insert(fields, own) end
if ARGV[7] ~= '' then table.insert(fields, 'usage'); table.insert(fields, ARGV[7]) end
redis.call('HSET', job, unpack(fields))
redis.call('INCRBY', reserved, reserve)
write_progress(job, 8)
redis.call('SADD', lines, line)
redis.call('RPUSH', own, ARGV[2])
in_turn(line, own)
redis.call('RPUSH', line .. ':wake', 1)
return 1
"""
)

# KEYS: lines SET -> the number of jobs in line
DEPTH = _LINES + """
local pending = 0
for _, line in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  pending = pending + waiting(line)
end
return pending
"""

# KEYS: processing, leases, then the lines to take from, in the order to try them
# ARGV: job key prefix, lease (ms), started_at (JSON), worker id, job id or '', token taken,
# and '' or the microseconds since the epoch of that started_at when the claim sent it before it
# blocked (a BLPOP in the same pipeline, queue.py): the job then started when the later of that
# and its `queued` says, since a claim that waits is woken as a job is put in line.
# With no job id, takes a job from the first language's line that has one (LMOVE), so a claim
# with work waiting is one round trip, and one of that line's wake-up tokens with it, unless the
# claim already took one (ARGV[6] = '1': it woke up on it). Within a language, the owners with
# jobs waiting take turns (round robin over `<line>:turns`), so one owner's thousands of jobs
# delay another's first job by at most one job per owner waiting; each owner's jobs go oldest
# first. With a job id (a worker of the
# version before lines, whose BLMOVE moved it), recovery may have put it back in line since, or
# another worker may have started it.
# -> {token, record fields} or nil
START = _STATUSES + _NOW + f"""
local processing, leases = KEYS[1], KEYS[2]

-- The oldest pending job of one line, moved to processing.
local function take(line)
  while true do
    local id = redis.call('LMOVE', line, processing, 'LEFT', 'RIGHT')
    if not id then return nil end
    if redis.call('HGET', ARGV[1] .. id, 'status') == PENDING then return id end
    -- An id whose record is gone (or not pending) has nothing to run: drop it.
    redis.call('LREM', processing, -1, id)
  end
end

-- A job of the language's next owner in turn; that owner goes to the back of the turns.
local function take_in_turn(line)
  local turns = line .. ':turns'
  -- Jobs put in the language's own line by a version before turns (a rolling upgrade) take
  -- their turn too.
  if redis.call('LLEN', line) > 0 and not redis.call('LPOS', turns, line) then
    redis.call('RPUSH', turns, line)
  end
  for _ = 1, redis.call('LLEN', turns) do
    local own = redis.call('LMOVE', turns, turns, 'LEFT', 'RIGHT')
    local id = take(own)
    if redis.call('LLEN', own) == 0 then redis.call('LREM', turns, -1, own) end
    if id then return id end
  end
  return nil
end

local id, job = ARGV[5], nil
if id and id ~= '' then
  job = ARGV[1] .. id
  if not redis.call('LPOS', processing, id) then return nil end
  if redis.call('HGET', job, 'status') ~= PENDING then return nil end
else
  id = nil
  for i = 3, #KEYS do
    id = take_in_turn(KEYS[i])
    if id then
      job = ARGV[1] .. id
      if ARGV[6] ~= '1' then redis.call('LPOP', KEYS[i] .. ':wake') end
      break
    end
  end
  if not id then return nil end
end
local started_at = ARGV[3]
if (ARGV[7] or '') ~= '' then
  local queued_us, queued_at = string.match(redis.call('HGET', job, 'queued') or '', '^(%d+) (.+)$')
  if queued_us and tonumber(queued_us) > tonumber(ARGV[7]) then started_at = queued_at end
end
local token = redis.call('HINCRBY', job, 'fence', 1)
redis.call('HINCRBY', job, 'attempts', 1)
redis.call('HSET', job, 'status', RUNNING, 'started_at', started_at, 'worker', ARGV[4])
redis.call('ZADD', leases, micros(now_us() + tonumber(ARGV[2]) * 1000), id)
return {{token, {_RECORD}}}
"""

# KEYS: job, leases
# ARGV: job id, token, lease (ms)
RENEW = _STATUSES + _NOW + """
local state = redis.call('HMGET', KEYS[1], 'status', 'fence')
if state[1] ~= RUNNING or state[2] ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[2], micros(now_us() + tonumber(ARGV[3]) * 1000), ARGV[1])
return 1
"""

# A finish's announcement on the `finished` channel: the job's id, then, when it is small, what
# a client's read would fetch (VIEW_FIELDS, records.view_frame), so that a waiter need not read it
# back: "<id>\n" and per field "-" (none) or "<length>:<bytes>".
_ANNOUNCEMENT = (
    "local VIEW = {"
    + ", ".join(f"'{field}'" for field in VIEW_FIELDS)
    + "}\n"
    + f"local MAX_VIEW = {MAX_ANNOUNCED_VIEW_BYTES}\n"
    + """
local function announcement(job, id)
  local parts, size = {id, '\\n'}, 0
  for _, value in ipairs(redis.call('HMGET', job, unpack(VIEW))) do
    if value then
      size = size + #value
      table.insert(parts, #value .. ':')
      table.insert(parts, value)
    else
      table.insert(parts, '-')
    end
  end
  if size > MAX_VIEW then return id end
  return table.concat(parts)
end
"""
)

# KEYS: job, processing, leases, reserved
# ARGV: job id, token, channel, ttl (ms), if_expired ('1' or ''), then the progress values
# Writes a final state under the job's current lease. With if_expired, only if that lease has
# run out: that is recovery failing a job whose worker is lost, which a last-moment renewal
# must still be able to prevent.
FINISH = (
    _STATUSES
    + _NOW
    + _WRITE_PROGRESS
    + _ANNOUNCEMENT
    + """
local job, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HMGET', job, 'status', 'fence')
if state[2] ~= ARGV[2] then return 0 end
if state[1] ~= RUNNING then
  -- A finish re-sent after its reply was lost finds exactly what it wrote: it was accepted.
  if holds_progress(job, 6) then return 1 end
  return 0
end
if ARGV[5] ~= '' then
  local deadline = redis.call('ZSCORE', leases, ARGV[1])
  if not deadline or tonumber(deadline) > now_us() then return 0 end
end
write_progress(job, 6)
-- The request's bulk goes (the worker is done with it) and its result's reserve comes back.
local head = redis.call('HGET', job, 'head')
if head then redis.call('HSET', job, 'spec', head) end
local reserve = redis.call('HGET', job, 'reserve')
if reserve then redis.call('DECRBY', KEYS[4], reserve) end
-- The owner's booking (corral_redis.apikeys): no longer unfinished, its bytes held until expiry.
local usage = redis.call('HGET', job, 'usage')
if usage then redis.call('ZADD', usage, 'XX', micros(now_us() + tonumber(ARGV[4]) * 1000), ARGV[1]) end
-- `worker` stays: who ran the final attempt, for operators and the fault tests.
redis.call('HDEL', job, 'reserve')
redis.call('LREM', processing, 0, ARGV[1])
redis.call('ZREM', leases, ARGV[1])
redis.call('PEXPIRE', job, ARGV[4])
redis.call('PUBLISH', ARGV[3], announcement(job, ARGV[1]))
return 1
"""
)

# KEYS: job, processing, leases, reserved
# ARGV: job id, finished_at (JSON), finished channel, cancelled channel, ttl (ms)
# -> 1 cancelled (or this same cancel, re-sent), 0 unknown or already finished
# A pending job's id stays in its line: START drops an id whose job is no longer PENDING, so
# this script need not know which line holds it. The fence moves on, so the worker of a running
# job has its renewals and result refused; the cancelled channel tells it to stop the run now.
# What the job booked is given back as FINISH gives it back.
CANCEL = (
    _STATUSES
    + _NOW
    + """
local job, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HMGET', job, 'status', 'finished_at')
if state[1] == CANCELLED and state[2] == ARGV[2] then return 1 end
if state[1] ~= PENDING and state[1] ~= RUNNING then return 0 end
redis.call('HINCRBY', job, 'fence', 1)
redis.call('HSET', job, 'status', CANCELLED, 'finished_at', ARGV[2])
local head = redis.call('HGET', job, 'head')
if head then redis.call('HSET', job, 'spec', head) end
local reserve = redis.call('HGET', job, 'reserve')
if reserve then redis.call('DECRBY', KEYS[4], reserve) end
local usage = redis.call('HGET', job, 'usage')
if usage then redis.call('ZADD', usage, 'XX', micros(now_us() + tonumber(ARGV[5]) * 1000), ARGV[1]) end
redis.call('HDEL', job, 'reserve')
redis.call('LREM', processing, 0, ARGV[1])
redis.call('ZREM', leases, ARGV[1])
redis.call('PEXPIRE', job, ARGV[5])
redis.call('PUBLISH', ARGV[3], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
"""
)

# KEYS: job, processing, leases
# ARGV: job id, token, when it is put back in line (its `queued`)
# Back to the front of its line with the attempt given back (core's requeue(count_attempt=False)).
RELEASE = _STATUSES + _LINES + """
local job = KEYS[1]
local state = redis.call('HMGET', job, 'status', 'fence', 'attempts')
if state[1] ~= RUNNING or state[2] ~= ARGV[2] then return 0 end
if tonumber(state[3]) > 0 then redis.call('HINCRBY', job, 'attempts', -1) end
redis.call('HSET', job, 'status', PENDING)
redis.call('HDEL', job, 'started_at', 'worker')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('LREM', KEYS[2], 0, ARGV[1])
put_back(job, ARGV[1], true, ARGV[3])
return 1
"""

# KEYS: processing, leases
# ARGV: job key prefix, max attempts, batch size, when jobs are put back in line (`queued`)
# -> {requeued ids, {{fence, record fields}, ...} of jobs out of attempts, expired count}
# Jobs out of attempts are only reported: core fails them (corral_core.job.fail with
# worker_lost), and the caller stores each with FINISH, fenced and only if its lease is still
# expired.
RECOVER = _STATUSES + _NOW + _LINES + f"""
local processing, leases = KEYS[1], KEYS[2]
local prefix, now, max_attempts = ARGV[1], micros(now_us()), tonumber(ARGV[2])
local requeued, exhausted = {{}}, {{}}
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(expired) do
  local job = prefix .. id
  local state = redis.call('HMGET', job, 'status', 'attempts', 'fence')
  if state[1] ~= RUNNING then
    redis.call('ZREM', leases, id)
  elseif tonumber(state[2]) >= max_attempts then
    table.insert(exhausted, {{state[3], {_RECORD}}})
  else
    redis.call('HSET', job, 'status', PENDING)
    redis.call('HDEL', job, 'started_at', 'worker')
    redis.call('ZREM', leases, id)
    redis.call('LREM', processing, 0, id)
    put_back(job, id, false, ARGV[4])
    table.insert(requeued, id)
  end
end
-- An id in processing without a lease was taken by a BLMOVE whose worker died before START.
-- It never ran: back to the front of the line, no attempt counted.
for _, id in ipairs(redis.call('LRANGE', processing, 0, -1)) do
  if not redis.call('ZSCORE', leases, id) then
    local status = redis.call('HGET', prefix .. id, 'status')
    if status == RUNNING then
      -- Running without a lease breaks the scripts' invariant; expire it so it is recovered.
      redis.call('ZADD', leases, now, id)
    else
      redis.call('LREM', processing, 0, id)
      if status == PENDING then put_back(prefix .. id, id, true, ARGV[4]) end
    end
  end
end
return {{requeued, exhausted, #expired}}
"""

# KEYS: workers ZSET, worker info HASH
_PRUNE_WORKERS = (
    _NOW
    + """
local function prune()
  local now = micros(now_us())
  local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, id in ipairs(stale) do redis.call('HDEL', KEYS[2], id) end
  if #stale > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
end
"""
)

# ARGV: worker id, ttl (ms), encoded WorkerInfo
HEARTBEAT = (
    _PRUNE_WORKERS
    + """
redis.call('ZADD', KEYS[1], micros(now_us() + tonumber(ARGV[2]) * 1000), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
prune()
return 1
"""
)

# KEYS: duty hash. ARGV: worker id, ttl (ms) -> 1 when the worker holds the duty
HOLD_DUTY = (
    _NOW
    + """
local now = now_us()
local holder = redis.call('HGET', KEYS[1], 'holder')
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0')
if holder and holder ~= ARGV[1] and expires > now then
  return 0
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'expires', micros(now + tonumber(ARGV[2]) * 1000))
return 1
"""
)

# -> encoded WorkerInfo of every live worker
LIVE_WORKERS = (
    _PRUNE_WORKERS
    + """
prune()
local live = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  table.insert(live, redis.call('HGET', KEYS[2], id))
end
return live
"""
)
